"""The explorer's page in Chromium: the bugs of issue 29's "worth opening" table stay fixed.

* the attention view draws the EXPLAINED text, not the text typed into the box since;
* a clicked row's explanation opens right under its row, its top inside the window (1280 and
  800 px wide), and switching the data set leaves nothing of the previous one's row;
* every explanation is headed by its own text (the explain view) or number and text (a row);
* attention is drawn in one purple scale (lines, matrix cells, every thumbnail's pixels);
* an upload uses the methods chosen in the upload form, not the Explain tab's;
* "Save as HTML report" sends what is on screen: the per-layer relevance, the agreement and the
  attention head shown.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer

from explorer_browser import browser, page  # noqa: E402,F401  (fixtures)
from explorer_browser import SHIPPED, choose_methods, explain, explained_data, opened_page, rgb, upload  # noqa: E402
from serving import serving  # noqa: E402

ADJECTIVES = ["wonderful", "dull", "moving", "boring", "gripping", "tedious", "charming", "clumsy"]
NOUNS = ["film", "movie", "story", "plot"]
DATA = [(f"the {noun} is {adjective}", "positive" if i % 3 else "negative")
        for i, (adjective, noun) in enumerate((a, n) for a in ADJECTIVES for n in NOUNS)]  # 32 rows
PURPLE = (106, 61, 154)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data, records = explained_data(tmp_path_factory.mktemp("bugs"), DATA)
    with serving(create_app(Explorer([(SHIPPED, *load_model(SHIPPED))], data))) as address:
        second = upload(address, "second.txt", "a quiet , lovely film\nan awful mess\n", ["gradient_x_input"])
        yield address, records, second


def on_the_purple_scale(colour) -> bool:
    """Is ``colour`` PURPLE at some opacity over white (within 3 of it on every channel, which
    leaves room for rounding and the browser's smoothing between two cells)?"""
    steps = [c - 255 for c in PURPLE]
    offsets = [v - 255 for v in colour[:3]]
    opacity = sum(o * s for o, s in zip(offsets, steps)) / sum(s * s for s in steps)  # the nearest point
    return -0.01 <= opacity <= 1.01 and all(abs(o - opacity * s) <= 3 for o, s in zip(offsets, steps))


def attention_tokens(page) -> list:
    return page.locator("#attention text.attention-from").all_text_contents()


def test_the_attention_view_draws_the_explained_text_not_the_text_now_in_the_box(page):
    explain(page, "a wonderful , moving film")
    page.wait_for_selector("#attention text.attention-from")
    explained = ["[CLS]", "a", "wonderful", ",", "moving", "film", "[SEP]"]
    assert attention_tokens(page) == explained
    page.fill("#text", "something else entirely , typed after the run")
    with page.expect_request("**/api/attention") as sent:
        page.select_option("#layer", index=2)
    assert sent.value.post_data_json["text"] == "a wonderful , moving film"
    page.wait_for_selector("#attention[data-layer='2'] text.attention-from")
    assert attention_tokens(page) == explained
    page.select_option("#attention-mode", "matrix")
    assert page.locator("#attention rect").count() == len(explained) ** 2


@pytest.mark.parametrize("width", [1280, 800])
def test_a_clicked_rows_explanation_opens_under_it_in_view(browser, site, tmp_path, width):
    with opened_page(browser, site[0], tmp_path, width=width, height=900) as page:
        page.click("#tab-data")
        page.wait_for_function("() => document.querySelectorAll('#rows tbody tr.row').length === 32")
        for index in ("30", "3"):  # near the end of the table, then near its top
            page.click(f"#rows tbody tr[data-index='{index}']")
            page.wait_for_selector("#row-detail span.w")
            top = page.evaluate("document.querySelector('#row-detail').getBoundingClientRect().top")
            assert 0 <= top < 900 - 100, f"the detail's top is at {top} px of a 900 px window"
            row = page.evaluate(f"document.querySelector(\"tr[data-index='{index}']\").getBoundingClientRect().top")
            assert 0 <= row < top  # the row clicked stays in view, above its explanation
            assert page.evaluate("document.querySelector('tr.detail').previousElementSibling.dataset.index") == index
            assert page.locator("tr.detail").count() == 1


def test_switching_the_data_set_clears_the_previous_rows_explanation(page, site):
    page.click("#tab-data")
    page.wait_for_selector("#rows tbody tr[data-index='5']")
    page.click("#rows tbody tr[data-index='5']")
    page.wait_for_selector("#row-detail span.w")
    page.select_option("#dataset", site[2])
    page.wait_for_function("() => document.querySelectorAll('#rows tbody tr.row').length === 2")
    assert page.locator("#row-detail, tr.detail, tr.selected").count() == 0
    assert page.locator("#rows tbody tr.row td:nth-child(2)").all_inner_texts() == ["a quiet , lovely film",
                                                                                    "an awful mess"]


def test_every_explanation_is_headed_by_its_own_text_or_number(page, site):
    _, records, _ = site
    explain(page, "a gripping , beautifully acted film")
    assert page.inner_text("#result-title") == "a gripping , beautifully acted film"
    assert "Example 1" not in page.inner_text("#result")
    page.click("#tab-data")
    for index in (2, 7):
        page.click(f"#rows tbody tr[data-index='{index}']")
        page.wait_for_function(f"() => document.querySelector('#row-detail h2')?.textContent.startsWith('Row {index}:')")
        assert page.inner_text("#row-detail h2") == f"Row {index}: {records[index]['text']}"


def test_attention_is_drawn_in_one_purple_scale(page):
    explain(page, "a wonderful , moving film")
    page.wait_for_selector("#attention line", state="attached")
    strokes = set(page.eval_on_selector_all("#attention line", "(lines) => lines.map((l) => l.getAttribute('stroke'))"))
    assert {rgb(stroke) for stroke in strokes} == {PURPLE}
    page.select_option("#attention-mode", "matrix")
    fills = page.eval_on_selector_all("#attention rect", "(cells) => cells.map((c) => getComputedStyle(c).fill)")
    assert fills and all(on_the_purple_scale(rgb(fill)) for fill in fills)
    assert len({fill for fill in fills}) > 3  # weights differ, and so do the shades
    page.wait_for_selector("#overview canvas")
    pixels = page.evaluate("""() => [...document.querySelectorAll('#overview canvas')].flatMap((canvas) => {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const colours = new Set();
        for (let i = 0; i < data.length; i += 4) colours.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
        return [...colours]; })""")
    off_scale = [p for p in pixels if not on_the_purple_scale(tuple(map(int, p.split(","))))]
    assert len(pixels) > 10 and off_scale == []


def test_an_upload_uses_the_methods_chosen_in_the_upload_form(page, tmp_path):
    assert sorted(page.eval_on_selector_all("#methods input:checked", "(boxes) => boxes.map((b) => b.value)")) == [
        "gradient", "gradient_x_input", "lrp"]  # the Explain tab's choice stays as it is
    page.click("#tab-data")
    assert page.is_visible("#upload-methods")
    choose_methods(page, ["occlusion"], "#upload-methods")
    file = tmp_path / "mine.txt"
    file.write_text("a wonderful film\na dull movie\n", encoding="utf-8")
    page.set_input_files("#upload", str(file))
    with page.expect_request("**/api/datasets") as sent:
        page.click("#upload-button")
    assert sent.value.post_data_json["methods"] == ["occlusion"]
    page.wait_for_function("() => [...document.querySelectorAll('#dataset option')].some((o) => "
                           "o.textContent.startsWith('mine.txt') && o.selected)")
    assert page.locator("#words-method option").all_inner_texts() == ["occlusion"]


def test_save_as_html_report_sends_what_is_on_screen(page):
    explain(page, "a wonderful , moving film")
    page.wait_for_selector("#overview canvas")
    page.select_option("#layer", index=4)
    page.select_option("#head", index=9)
    page.wait_for_selector("#attention[data-layer='4'][data-head='9'] text.attention-from")
    with page.expect_request("**/api/report") as sent, page.expect_download() as waiting:
        page.click("#save-report")
    body = sent.value.post_data_json
    [view] = body["views"]
    assert (view["attention"]["layer"], view["attention"]["head"]) == (4, 9)
    assert view["attention"]["tokens"] == attention_tokens(page)
    shown_methods = page.locator("#agreement table tr:first-child th").all_inner_texts()[1:]
    assert len(view["agreement"]["methods"]) == len(shown_methods) == 3
    assert set(view["layers"]) == {"lrp", "gradient_x_input"}  # the methods with per-layer relevance shown
    assert body["examples"][0]["text"] == "a wonderful , moving film"
    report = Path(waiting.value.path()).read_text(encoding="utf-8")
    assert "a wonderful , moving film" in report and 'http-equiv="Content-Security-Policy"' in report


def test_a_text_longer_than_the_models_positions_says_why_it_has_no_attention(page):
    choose_methods(page, ["lrp"])
    explain(page, " ".join(["a good film"] * 200))  # 602 tokens: explained in windows, no one attention map
    assert "fits the model's 512 positions; this one has 602 tokens" in page.inner_text("#attention-note")
    assert page.locator("#attention text, #overview canvas").count() == 0  # and nothing asked of the server
