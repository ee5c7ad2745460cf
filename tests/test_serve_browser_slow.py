"""The explorer's page in Chromium with slow requests: the cost shown before, results per group as
each finishes, a progress bar with the remaining time, the Explain button disabled while running
(a double click runs once), Cancel stops the run on the server too; over budget, a warning and
the server's refusal."""
from __future__ import annotations

import time

import pytest

from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer

from explorer_browser import browser, page  # noqa: E402,F401  (fixtures)
from explorer_browser import SHIPPED, choose_methods, explain  # noqa: E402
from serving import serving  # noqa: E402

STREAM = "/api/explain" + "/stream"  # the streamed explain's path

TEXT = "a gripping , beautifully acted film that never lets go"
SLOW_LIME_SAMPLES = 6000   # LIME rows of a run of about 20-40 s on 2 cores (within the server's budget)
RECORD_STATES = """() => {
    window.__seen = [];
    const look = () => window.__seen.push({
        state: document.querySelector('#result').dataset.state,
        groups: document.querySelectorAll('#heatmaps .group').length,
        grid: document.querySelectorAll('#grid table.grid tbody tr').length,
        explainDisabled: document.querySelector('#explain-button').disabled,
        cancelEnabled: !document.querySelector('#cancel').disabled,
        progressShown: !document.querySelector('#progress-box').hidden,
        progress: document.querySelector('#progress').value,
        remaining: document.querySelector('#remaining').textContent});
    new MutationObserver(look).observe(document.querySelector('#explain-tab'),
        {subtree: true, childList: true, attributes: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def site():
    with serving(create_app(Explorer([(SHIPPED, *load_model(SHIPPED))]))) as address:
        yield address, None  # (address, records): no data set


def set_option(page, name: str, value) -> None:
    """Open the method options (when closed) and type ``value`` into the option ``name``."""
    if not page.is_visible(f"#option-{name}"):
        page.click("details:has(#options) > summary")
    page.fill(f"#option-{name}", str(value))


def test_the_cost_is_shown_before_running(page):
    choose_methods(page, ["lrp", "occlusion"])
    with page.expect_response("**/api/plan") as answered:
        page.fill("#text", TEXT)
    plan = answered.value.json()
    page.wait_for_function("() => document.querySelector('#plan').textContent.includes('forward rows')")
    shown = page.inner_text("#plan")
    assert f"{plan['rows']:,} forward rows × {plan['tokens']:,} tokens = {plan['cost']:,}" in shown
    assert f"budget {plan['budget']:,}" in shown and "2 runs" in shown  # LRP's pass, then occlusion alone
    assert ("time not known" in shown) if plan["seconds"] is None else ("second" in shown or " s" in shown)
    assert page.get_attribute("#plan", "class") == "plan small"  # within the budget: no warning


def test_over_the_budget_a_warning_then_the_servers_refusal(page):
    choose_methods(page, ["lime"])
    set_option(page, "lime_samples", 100000)
    with page.expect_response("**/api/plan") as answered:
        page.fill("#text", TEXT)
    assert answered.value.json()["within_budget"] is False
    page.wait_for_selector("#plan.warning")
    assert "Over the server's budget" in page.inner_text("#plan")
    page.expected_refusals = [413]  # the browser's console line of the refusal below
    with page.expect_response("**/api/explain/stream") as refused:
        page.click("#explain-button")
    assert refused.value.status == 413
    message = refused.value.json()["error"]
    page.wait_for_selector("#result[data-state=failed]")
    assert message in page.inner_text("#error") and message in page.inner_text("#plan")
    assert page.is_enabled("#explain-button")


def test_results_appear_per_group_with_progress_and_the_button_disabled(page):
    choose_methods(page, ["lrp", "gradient_x_input", "occlusion", "lime"])
    set_option(page, "lime_samples", 300)
    page.fill("#text", TEXT)
    page.evaluate(RECORD_STATES)
    page.click("#explain-button")
    page.wait_for_selector("#result[data-state=done]")
    seen = page.evaluate("window.__seen")
    running = [s for s in seen if s["state"] == "running"]
    assert running and all(s["explainDisabled"] and s["cancelEnabled"] and s["progressShown"] for s in running)
    # one group for the methods sharing a pass (LRP and GI), then occlusion, then LIME: each shown as it
    # finishes (the last one's lines come with "done": the page may draw both at once)
    assert {0, 1, 2} <= {s["groups"] for s in running}
    assert max(s["grid"] for s in running if s["groups"] == 1) == 2
    assert max(s["grid"] for s in running if s["groups"] == 2) == 3
    assert any(" of " in s["remaining"] and "rows" in s["remaining"] for s in running)
    progress = [s["progress"] for s in running]
    assert progress == sorted(progress) and progress[-1] > 0
    assert page.is_enabled("#explain-button") and page.is_disabled("#cancel") and page.is_hidden("#progress-box")
    assert page.locator("#grid table.grid tbody tr").count() == 4
    assert "Explained: " in page.inner_text("#status")


def test_a_double_click_runs_once(page):
    """A double click, and Ctrl+Enter pressed while the run is under way, start no second run."""
    runs = []
    page.on("request", lambda request: runs.append(request) if request.url.endswith(STREAM) else None)
    choose_methods(page, ["lime"])
    set_option(page, "lime_samples", SLOW_LIME_SAMPLES)  # long enough to press keys while it runs
    page.fill("#text", TEXT)
    page.dblclick("#explain-button")
    page.wait_for_function("() => document.querySelector('#progress').value > 0")  # the run is under way
    page.keyboard.press("Control+Enter")
    page.keyboard.press("Control+Enter")
    assert page.get_attribute("#result", "data-state") == "running" and page.is_disabled("#explain-button")
    page.click("#cancel")
    page.wait_for_selector("#result[data-state=cancelled]")
    assert len(runs) == 1


def test_cancel_stops_the_run_and_the_next_request_does_not_wait(page):
    choose_methods(page, ["lime"])
    set_option(page, "lime_samples", SLOW_LIME_SAMPLES)
    page.fill("#text", TEXT)
    page.click("#explain-button")
    page.wait_for_function("() => document.querySelector('#progress').value > 0")  # the run is under way
    page.click("#cancel")
    page.wait_for_selector("#result[data-state=cancelled]")
    assert "Cancelled" in page.inner_text("#status") and page.is_enabled("#explain-button")
    assert page.is_hidden("#progress-box") and page.is_disabled("#save-report")
    choose_methods(page, ["lrp"])
    started = time.monotonic()
    explain(page, "good film")
    quick = time.monotonic() - started
    assert quick < 8, f"the next request took {quick:.1f} s: the cancelled run went on"


def test_an_upload_can_be_cancelled_and_a_data_set_deleted(page, tmp_path):
    page.click("#tab-data")
    big = tmp_path / "many.txt"
    big.write_text("".join(f"text number {i} is a fairly long sentence about a film\n" for i in range(60)),
                   encoding="utf-8")
    choose_methods(page, ["lime"], "#upload-methods")  # 1,000 LIME rows a text: a minute or more
    page.set_input_files("#upload", str(big))
    page.click("#upload-button")
    page.wait_for_function("() => document.querySelector('#upload-progress').value > 0 || "
                           "!document.querySelector('#upload-cancel').disabled")
    page.click("#upload-cancel")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('cancelled')")
    assert page.is_enabled("#upload-button")
    assert page.locator("#dataset option").all_inner_texts() == []  # nothing stored
    assert page.inner_text("#error") == ""

    small = tmp_path / "two.txt"
    small.write_text("a wonderful film\na dull movie\n", encoding="utf-8")
    choose_methods(page, ["gradient_x_input"], "#upload-methods")
    page.set_input_files("#upload", str(small))
    page.click("#upload-button")
    page.wait_for_function("() => document.querySelectorAll('#rows tbody tr.row').length === 2")
    assert page.locator("#dataset option").all_inner_texts() == ["two.txt (2)"]
    page.click("#delete-dataset")
    page.wait_for_function("() => document.querySelectorAll('#dataset option').length === 0")
    assert page.locator("#rows tbody tr").count() == 0 and page.is_disabled("#delete-dataset")
    assert "deleted" in page.inner_text("#status")
