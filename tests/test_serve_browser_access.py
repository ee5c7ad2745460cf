"""The explorer's page in Chromium, used with the keyboard alone and read by assistive technology:

* Ctrl+Enter (and Cmd+Enter) explains; the tabs are ARIA tabs moved with the arrow keys; sort
  headers, rows, attention tokens and head thumbnails are focusable and Enter / Space activate them;
* every input, select and text box has a real <label>; a live status region announces results;
* every coloured word on the page (heatmaps, grid, agreement, what-if, metrics, a row) has a text
  colour with a contrast ratio of at least 4.5:1 to its background.
"""
from __future__ import annotations

import pytest

from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer

from explorer_browser import browser, page  # noqa: E402,F401  (fixtures)
from explorer_browser import SHIPPED, coloured_words, contrast, explain, explained_data, rgb  # noqa: E402
from serving import serving  # noqa: E402

DATA = [("a wonderful , moving film", "positive"), ("a dull and boring movie", "negative"),
        ("the film is wonderful", "positive"), ("the plot is dull", "positive"), ("an awful , tedious mess", "negative")]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data, records = explained_data(tmp_path_factory.mktemp("access"), DATA)
    with serving(create_app(Explorer([(SHIPPED, *load_model(SHIPPED))], data))) as address:
        yield address, records


def focused(page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.getAttribute('data-index') || "
                         "document.activeElement.tagName")


def tab_to(page, selector: str, limit: int = 200) -> None:
    """Press Tab until the element ``selector`` has the focus (as a keyboard user would)."""
    for _ in range(limit):
        if page.evaluate("(selector) => document.activeElement === document.querySelector(selector)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} is not reachable with Tab (focus ends on {focused(page)})")


def test_keyboard_only_explain_attention_heads_and_the_data_set(page):
    tab_to(page, "#text")
    page.keyboard.type("a wonderful , moving film")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#result[data-state=done]")
    assert page.locator("#heatmaps span.w").count() > 0

    page.wait_for_selector("#attention text.attention-from")
    tab_to(page, "#attention text.attention-from[data-index='2']")
    lines = page.locator("#attention line").count()
    page.keyboard.press("Enter")
    assert 0 < page.locator("#attention line").count() < lines
    assert page.get_attribute("#attention text.attention-from[data-index='2']", "aria-pressed") == "true"
    page.keyboard.press(" ")  # again: every token's lines
    assert page.locator("#attention line").count() == lines

    page.wait_for_selector("#overview button.thumb")
    tab_to(page, "#overview button.thumb[data-layer='1'][data-head='2']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#attention[data-layer='1'][data-head='2'] text.attention-from")

    page.focus("#text")  # Cmd+Enter on a Mac explains as well
    page.keyboard.press("Meta+Enter")
    page.wait_for_selector("#result[data-state=running], #result[data-state=done]")
    page.wait_for_selector("#result[data-state=done]")

    tab_to(page, "#tab-explain")
    page.keyboard.press("ArrowRight")
    assert focused(page) == "tab-data" and page.is_visible("#data-tab") and page.is_hidden("#explain-tab")
    assert page.get_attribute("#tab-data", "aria-selected") == "true"
    page.wait_for_selector("#rows tbody tr.row")
    tab_to(page, "th[data-sort=confidence]")
    page.keyboard.press("Enter")
    page.wait_for_selector("th[data-sort=confidence][aria-sort=ascending]")
    page.keyboard.press(" ")
    page.wait_for_selector("th[data-sort=confidence][aria-sort=descending]")
    page.wait_for_function("""() => {
        const values = [...document.querySelectorAll('#rows tbody tr.row td:nth-child(4)')].map((c) => Number(c.textContent));
        return values.length === 5 && values.every((v, i) => i === 0 || values[i - 1] >= v); }""")
    first = page.get_attribute("#rows tbody tr.row", "data-index")
    tab_to(page, f"#rows tbody tr.row[data-index='{first}']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#row-detail span.w")
    assert page.evaluate("document.querySelector('tr.detail').previousElementSibling.dataset.index") == first
    page.keyboard.press("Home")  # focus is on the row, not a tab: nothing changes
    tab_to(page, "#tab-data")
    page.keyboard.press("ArrowLeft")
    assert focused(page) == "tab-explain" and page.is_visible("#explain-tab")


def test_tabs_labels_and_the_live_status(page):
    roles = page.evaluate("""() => ({
        list: document.querySelectorAll('[role=tablist] [role=tab]').length,
        panels: [...document.querySelectorAll('[role=tab]')].map((tab) =>
            document.getElementById(tab.getAttribute('aria-controls')).getAttribute('role')),
        selected: [...document.querySelectorAll('[role=tab]')].map((tab) => tab.getAttribute('aria-selected'))})""")
    assert roles == {"list": 2, "panels": ["tabpanel", "tabpanel"], "selected": ["true", "false"]}
    assert page.get_attribute("#status", "role") == "status" and page.get_attribute("#status", "aria-live") == "polite"
    explain(page, "a dull and boring movie")
    prediction = page.locator("#grid p.prediction span.label-name").first.inner_text()
    assert page.inner_text("#status").startswith(f"Explained: {prediction} (0.")  # read out when it changes
    page.wait_for_selector("#whatif-words button")
    page.click("#tab-data")
    page.wait_for_selector("#confusion button.cell")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter((field) => !field.labels || field.labels.length === 0 || !field.labels[0].textContent.trim())
        .map((field) => field.id || field.outerHTML.slice(0, 80))""")
    assert unlabelled == []
    assert page.locator("input, select, textarea").count() > 30  # the method boxes, options, filters, upload


def test_every_coloured_word_reads_at_least_4_5_to_1(page):
    explain(page, "a dull and boring movie , but a wonderful cast")  # red and blue words in every method
    page.click("#whatif-words button.whatif-word:has-text('wonderful')")
    page.fill("#whatif-replacement", "awful")
    page.click("#whatif-replace")
    page.wait_for_selector("#whatif-result .side[data-side=changed] .w")
    page.wait_for_selector("#overview canvas")
    page.click("#tab-data")
    page.wait_for_selector("#confusion button.cell")
    page.click("#rows tbody tr.row[data-index='1']")
    page.wait_for_selector("#row-detail span.w")
    page.click("#tab-explain")  # both panels' words are measured: show them one after the other
    words = coloured_words(page)
    page.click("#tab-data")
    page.wait_for_selector("#row-detail span.w")
    words += coloured_words(page)
    low = [(text, colour, background, round(contrast(rgb(colour), rgb(background)), 2))
           for text, colour, background in words if contrast(rgb(colour), rgb(background)) < 4.5]
    assert len(words) > 100 and low == []
    backgrounds = {rgb(background) for _, _, background in words}
    assert any(r > 200 and g < 120 for r, g, b in backgrounds) and any(b > 200 and r < 120 for r, g, b in backgrounds)
