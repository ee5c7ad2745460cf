"""The explorer's page in Chromium: the views a LIT / bertviz user expects, each used by clicking.

* the comparison grid: the prediction and probabilities first, a row per method ordered by its
  agreement with the others, a column per word, each cell coloured by its score;
* the what-if: click a word, replace or remove it (or edit the text), and see the changed text's
  prediction and relevance next to the original's, the changed words marked;
* data-set metrics: the accuracy, a confusion matrix whose cells filter the rows, a confidence
  histogram whose bars filter them;
* all heads at a glance (layers x heads), a click opens that head in the detailed view;
* the words table hides stop words and punctuation on request and keeps a minimum count.
"""
from __future__ import annotations

import re
from collections import Counter

import pytest

from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer

from explorer_browser import browser, page  # noqa: E402,F401  (fixtures)
from explorer_browser import SHIPPED, explain, explained_data, rgb, table_rows  # noqa: E402
from serving import serving  # noqa: E402

DATA = [("a wonderful , moving film", "positive"), ("a dull and boring movie", "negative"),
        ("the film is wonderful .", "positive"), ("the plot is dull .", "positive"),
        ("a wonderful and charming story", "positive"), ("the acting is dull , the plot boring", "negative"),
        ("what a boring , tedious film", "positive"), ("the story is moving and wonderful", "negative"),
        ("a charming film , a wonderful cast", "positive"), ("the film is a mess", "negative"),
        ("dull , dull , dull", "negative"), ("a film", "positive")]
STOP_WORDS = {"a", "the", "is", "and"}  # English stop words of the data set


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data, records = explained_data(tmp_path_factory.mktemp("views"), DATA)
    with serving(create_app(Explorer([(SHIPPED, *load_model(SHIPPED))], data))) as address:
        yield address, records


def grid(page) -> dict:
    """The grid as shown: its column words, and per row (top to bottom) method, agreement, cells."""
    return page.evaluate("""() => {
        const table = document.querySelector('#grid table.grid');
        const words = [...table.tHead.rows[0].cells].slice(2).map((c) => c.textContent);
        const rows = [...table.tBodies[0].rows].map((row) => ({
            method: row.cells[0].textContent, agreement: row.cells[1].textContent,
            cells: [...row.cells].slice(2).map((c) => [Number(c.textContent.replace('−', '-')),
                                                      getComputedStyle(c).backgroundColor])}));
        return {words, rows};
    }""")


def test_the_comparison_grid_aligns_methods_and_words_prediction_first(page):
    explain(page, "a wonderful , moving film")
    shown = grid(page)
    assert shown["words"] == ["a", "wonderful", ",", "moving", "film"]
    assert sorted(row["method"] for row in shown["rows"]) == ["GI (gradient x input)", "GS (gradient)", "LRP"]
    first = page.evaluate("document.querySelector('#grid').firstElementChild.nextElementSibling.className")
    assert first == "prediction" and "positive" in page.inner_text("#grid p.prediction")  # before the table
    # rows ordered by the mean of each method's Spearman with the others (the agreement table below)
    matrix = page.evaluate("""() => [...document.querySelectorAll('#agreement table tr')].slice(1).map((row) =>
        [row.cells[0].textContent, [...row.cells].slice(1).map((c) => Number(c.textContent))])""")
    means = {name: (sum(values) - 1) / (len(values) - 1) for name, values in matrix}
    order = [row["method"] for row in shown["rows"]]
    assert [means[m] for m in order] == sorted(means.values(), reverse=True)
    assert [float(row["agreement"].replace("−", "-")) for row in shown["rows"]] == [
        pytest.approx(means[m], abs=0.005) for m in order]
    lrp = next(row for row in shown["rows"] if row["method"] == "LRP")
    values = [value for value, _ in lrp["cells"]]
    assert max(values) == values[1] == 1.0  # "wonderful": LRP's largest score, the full scale
    for value, colour in lrp["cells"]:  # red for the label, blue against, deeper the larger
        red, green, blue = rgb(colour)
        assert (red == 255 and green == blue) if value >= 0 else (blue == 255 and red == green)
        assert abs(255 - min(red, blue) - round(255 * abs(value))) <= 3


def test_what_if_replace_and_remove_a_word_by_clicking(page):
    explain(page, "a wonderful , moving film")
    page.click("#whatif-words button.whatif-word:has-text('wonderful')")
    page.fill("#whatif-replacement", "dreadful")
    with page.expect_response("**/api/explain") as answered:
        page.click("#whatif-replace")
    changed = answered.value.json()["examples"][0]
    page.wait_for_selector("#whatif-result .side[data-side=changed]")
    assert page.input_value("#whatif-text") == "a dreadful , moving film"
    original_side, changed_side = "#whatif-result .side[data-side=original]", "#whatif-result .side[data-side=changed]"
    assert "Prediction: positive" in page.inner_text(original_side)
    assert f"Prediction: {changed['prediction']}" in page.inner_text(changed_side)
    marked = page.locator(f"{changed_side} .w.changed").all_inner_texts()
    assert set(marked) == {"dreadful"} and len(marked) == 3  # once per method, nothing else marked
    assert set(page.locator(f"{original_side} .w.removed").all_inner_texts()) == {"wonderful"}
    summary = page.inner_text("#whatif-result .whatif-summary")
    assert f"{changed['probabilities']['positive']:.3f}" in summary

    page.click("#whatif-words button.whatif-word:has-text('moving')")
    page.click("#whatif-remove")
    page.wait_for_function("() => ![...document.querySelectorAll('#whatif-result .side[data-side=changed] .w')]"
                           ".some((w) => w.textContent === 'moving')")
    assert page.input_value("#whatif-text") == "a dreadful , film"
    words = page.locator(f"{changed_side} .text").first.locator(".w").all_inner_texts()
    assert words == ["a", "dreadful", ",", "film"]

    page.fill("#whatif-text", "a wonderful , moving film , truly")  # typed, then Ctrl+Enter in the box
    page.press("#whatif-text", "Control+Enter")
    page.wait_for_function("() => [...document.querySelectorAll('#whatif-result .side[data-side=changed] .w.changed')]"
                           ".some((w) => w.textContent === 'truly')")
    assert set(page.locator(f"{changed_side} .w.changed").all_inner_texts()) == {",", "truly"}
    assert page.inner_text("#result-title") == "a wonderful , moving film"  # the original stays


def test_data_set_metrics_filter_the_rows(page, site):
    _, records = site
    page.click("#tab-data")
    page.wait_for_selector("#confusion button.cell")
    with_gold = [r for r in records if "label" in r]
    accuracy = sum(r["prediction"] == r["label"] for r in with_gold) / len(with_gold)
    assert f"accuracy {100 * accuracy:.1f} %" in page.inner_text("#accuracy")

    for cell in page.locator("#confusion button.cell").all():
        gold, predicted, count = cell.get_attribute("data-gold"), cell.get_attribute("data-predicted"), int(cell.inner_text())
        assert count == sum(r["label"] == gold and r["prediction"] == predicted for r in records)
    wrong = page.locator("#confusion button.cell[data-gold=positive][data-predicted=negative]")
    expected = sorted(i for i, r in enumerate(records) if r["label"] == "positive" and r["prediction"] == "negative")
    assert expected, "the data set has a positive text predicted negative"
    wrong.click()
    page.wait_for_function(f"() => document.querySelectorAll('#rows tbody tr.row').length === {len(expected)}")
    shown = table_rows(page, "#rows")
    assert sorted(int(row[0]) for row in shown) == expected
    assert all(row[2] == "negative" and row[4] == "positive" for row in shown)
    assert "gold positive, predicted negative" in page.inner_text("#filter-chip")

    bars = page.locator("#histogram button.bar-button").all()
    bar = max(bars, key=lambda b: int(b.locator(".count").inner_text()))  # the fullest bar
    low, high, count = float(bar.get_attribute("data-min")), float(bar.get_attribute("data-max")), int(
        bar.locator(".count").inner_text())
    bar.click()
    page.wait_for_function(f"() => document.querySelectorAll('#rows tbody tr.row').length === {count}")
    assert all(low - 5e-4 <= float(row[3]) <= high + 5e-4 for row in table_rows(page, "#rows"))
    page.click("#filter-clear")
    page.wait_for_function(f"() => document.querySelectorAll('#rows tbody tr.row').length === {len(records)}")
    assert page.is_hidden("#filter-chip")


def test_all_heads_at_a_glance_open_one_by_clicking(page):
    explain(page, "a wonderful , moving film")
    page.wait_for_selector("#overview canvas")
    assert page.locator("#overview button.thumb").count() == 6 * 12
    page.click("#overview button.thumb[data-layer='3'][data-head='5']")
    page.wait_for_selector("#attention[data-layer='3'][data-head='5'] text.attention-from")
    assert (page.input_value("#layer"), page.input_value("#head")) == ("3", "5")
    top = page.evaluate("document.querySelector('#attention-view').getBoundingClientRect().top")
    assert 0 <= top < 200  # the head opened is in view
    assert "Layer 4, head 6" in page.inner_text("#status")


def shown_words(page) -> set:
    return set(page.locator("#words table.words td:first-child").all_inner_texts()) - {"no word"}


def test_the_words_table_hides_stop_words_punctuation_and_rare_words(page, site):
    _, records = site
    occurrences = Counter(w["word"].lower() for r in records for w in r["words"])
    page.click("#tab-data")
    page.wait_for_selector("#words table.words td")
    everything = shown_words(page)
    assert everything & STOP_WORDS and everything & {",", "."}  # the data set's words, before hiding
    assert all(occurrences[w] >= 2 for w in everything)  # the default minimum count

    def after(change) -> set:
        with page.expect_response(re.compile(r"/words\?")):
            change()
        page.wait_for_selector("#words table.words")
        return shown_words(page)

    no_stop = after(lambda: page.check("#hide-stopwords"))
    assert not no_stop & STOP_WORDS and no_stop & {",", "."}
    plain = after(lambda: page.check("#hide-punctuation"))
    assert not plain & (STOP_WORDS | {",", "."}) and plain
    frequent = after(lambda: page.fill("#min-count", "4"))
    assert frequent and all(occurrences[w] >= 4 for w in frequent) and frequent < plain


def test_the_grid_of_a_pair_marks_where_the_second_text_starts(page):
    page.fill("#pair", "but the acting is dull")
    explain(page, "a wonderful film")
    shown = grid(page)
    assert shown["words"] == ["a", "wonderful", "film", "but", "the", "acting", "is", "dull"]
    assert page.locator("#grid thead th.pair-start").all_inner_texts() == ["but"]
    assert page.locator("#grid tbody td.pair-start").count() == len(shown["rows"])
    assert page.inner_text("#result-title") == "a wonderful film ‖ but the acting is dull"
