"""The explorer's page in a real browser: Debian's ``chromium`` driven by Playwright (its own
browser download is not used), against ``bert-lrp serve``'s app on 127.0.0.1.

One walk through the page, as a user would click it, with the shipped SST-2 model, a random
masked LM and a small data set written by ``explain --jsonl``:

* type a sentence, explain it: per method the words in the text's order, a strongly positive word
  coloured red (relevance for "positive"), the rank agreement between the methods;
* switch the attention's layer and head (the drawing changes), pick one token (only its lines
  stay), switch to the matrix (one cell per token pair);
* save the view as the HTML report (a download holding the same heatmaps);
* pick the masked LM, click a word to mask it: top-5 predictions and the logit lens per layer;
* open the data-set tab, sort by confidence both ways, filter by a word, click a row (its
  heatmaps), see the words that push toward each label, upload a file of texts;
* hostile text (markup, event handlers, bidi and terminal escapes) typed in, explained, changed in
  the what-if, masked and shown from the data set, and a hostile gold label in the metrics and
  the filters, run nothing (``window.__xss`` stays undefined);
* no console error and no page error anywhere; screenshots go to the test's temporary folder.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer

from explorer_browser import browser, page  # noqa: E402,F401  (fixtures)
from explorer_browser import HOSTILE, SHIPPED, explain, explained_data, heatmap_words, rgb  # noqa: E402
from serving import serving  # noqa: E402  (tests/ is on sys.path under pytest)
from test_inspect import hf_mlm  # noqa: E402,F401  (a transformers BertForMaskedLM fixture)

DATA = [("a wonderful , moving film", "positive"), ("a dull and boring movie", "negative"),
        ("the film is wonderful", "positive"), ("the plot is dull", "positive"), (HOSTILE, "negative")]
HOSTILE_LABEL = '<img src=x onerror="window.__xss=1">\u202egold'  # a gold label of a --data file


@pytest.fixture(scope="module")
def site(tmp_path_factory, hf_mlm):
    data, records = explained_data(tmp_path_factory.mktemp("browser"), DATA[:-1] + [(HOSTILE, HOSTILE_LABEL)])
    loaded = [(SHIPPED, *load_model(SHIPPED)), (hf_mlm[1], *load_model(hf_mlm[1], "masked_lm"))]
    with serving(create_app(Explorer(loaded, data))) as address:
        yield address, records


def test_explain_a_sentence_compare_methods_and_read_the_attention(page, tmp_path):
    assert page.locator("#model option").all_inner_texts() == ["minilm-sst2", "random-mlm"]
    defaults = ["lrp", "gradient_x_input", "gradient"]  # the road's default methods, checked
    assert [page.is_checked(f"#method-{name}") for name in defaults] == [True, True, True]
    explain(page, "a wonderful , moving film")
    blocks = heatmap_words(page)
    assert list(blocks) == ["GS (gradient)", "GI (gradient x input)", "LRP"]  # in the order of the boxes
    for block in blocks.values():
        assert [word for word, _, _ in block] == ["a", "wonderful", ",", "moving", "film"]
    assert "positive" in page.inner_text("#heatmaps")
    assert re.search(r"embedding parts \(summed over the words\): word [+-]\d\.\d{4}, position [+-]\d\.\d{4}, "
                     r"token type [+-]\d\.\d{4}", page.inner_text("#heatmaps"))
    lrp = blocks["LRP"]  # LRP: "wonderful" pushes hardest toward "positive": the reddest word, + on hover
    scores = [float(title.split(" | ")[0]) for _, _, title in lrp]
    assert max(scores) == scores[1] > 0
    red, green, blue = rgb(lrp[1][1])
    assert red == 255 and green == blue < 100  # near the full red of the legend's end
    assert page.locator("#agreement table tr").count() == 4  # header + three methods
    page.screenshot(path=str(tmp_path / "explain.png"), full_page=True)

    page.wait_for_selector("#attention text.attention-from")
    assert page.is_visible("#attention-view")
    assert page.locator("#layer option").count() == 6 and page.locator("#head option").count() == 12
    first = page.inner_html("#attention")
    page.select_option("#layer", index=3)
    page.select_option("#head", index=7)
    page.wait_for_selector("#attention[data-layer='3'][data-head='7'] text.attention-from")
    assert page.inner_html("#attention") != first
    tokens = page.locator("#attention text.attention-from").count()
    assert tokens == 7  # [CLS] a wonderful , moving film [SEP]
    all_lines = page.locator("#attention line").count()
    page.click("#attention text.attention-from[data-index='2']")
    one_token = page.locator("#attention line").count()
    assert 0 < one_token < all_lines
    page.select_option("#attention-mode", "matrix")
    assert page.locator("#attention rect").count() == tokens * tokens
    page.screenshot(path=str(tmp_path / "attention.png"), full_page=True)

    with page.expect_download() as waiting:
        page.click("#save-report")
    report = Path(waiting.value.path()).read_text(encoding="utf-8")
    assert report.startswith("<!DOCTYPE html>") and report.count('class="w"') == 3 * 5 and "wonderful" in report


def test_mask_a_word_and_read_the_logit_lens(page, tmp_path):
    page.select_option("#model", "random-mlm")
    assert page.is_visible("#mask-tab") and page.is_disabled("#preset")
    page.fill("#text", "the man went to the store")
    page.click("#explain-button")
    page.click("#mask-words span.mask-word[data-index='5']")
    page.wait_for_selector("#mask-result ol.mask-top li")
    assert page.locator("#mask-result ol.mask-top li").count() == 5
    assert "the man went to the [MASK]" in page.inner_text("#mask-result")
    lens_rows = page.locator("#mask-result table tr").count()
    assert lens_rows - 1 >= 2  # a row per layer (the random model has 2), under a header
    best = page.locator("#mask-result table tr:nth-child(2) td:nth-child(2)").inner_text()
    assert len(best.split(" | ")) == 3  # the three best tokens after that layer, with probabilities
    assert re.fullmatch(r"\d\.\d{3}, #\d+", page.locator("#mask-result table tr:nth-child(2) td:nth-child(3)").inner_text())
    page.screenshot(path=str(tmp_path / "mask.png"), full_page=True)


def test_the_data_set_sorts_filters_and_shows_a_row(page, site, tmp_path):
    _, records = site
    page.click("button.tab[data-tab=data]")
    page.wait_for_function("() => document.querySelectorAll('#rows tbody tr').length === 5")

    def confidences():
        return [float(c) for c in page.locator("#rows tbody tr td:nth-child(4)").all_inner_texts()]

    def wait_sorted(order):
        page.wait_for_function(f"""() => {{
            const values = [...document.querySelectorAll('#rows tbody tr td:nth-child(4)')].map((c) => Number(c.textContent));
            return values.length === 5 && values.every((v, i) => i === 0 || ({order}));
        }}""".replace("{order}", order))

    page.click("th[data-sort=confidence]")
    wait_sorted("values[i - 1] <= v")
    assert confidences() == sorted(confidences())
    page.click("th[data-sort=confidence]")
    wait_sorted("values[i - 1] >= v")
    assert confidences() == sorted(confidences(), reverse=True)

    page.fill("#filter-word", "wonderful")
    page.wait_for_function("() => document.querySelectorAll('#rows tbody tr').length === 2")
    assert all("wonderful" in t for t in page.locator("#rows tbody tr td:nth-child(2)").all_inner_texts())
    page.fill("#filter-word", "")
    page.wait_for_function("() => document.querySelectorAll('#rows tbody tr').length === 5")

    page.click("#rows tbody tr[data-index='4']")  # the hostile text, shown as text
    page.wait_for_selector("#row-detail span.w")
    hostile_row = page.inner_text("#rows tbody tr[data-index='4']")
    assert "<script>window.__xss=1</script>" in hostile_row and "\\u202eevil" in hostile_row  # shown, not obeyed
    page.click("#rows tbody tr[data-index='1']")
    page.wait_for_function("() => document.querySelector('#row-detail h2')?.textContent.includes('boring')")
    words = page.locator("#row-detail div.text").first.locator("span.w").all_inner_texts()
    assert words == [w["word"] for w in records[1]["words"]]
    assert page.locator("#words h3").count() == 2  # toward negative, toward positive
    page.screenshot(path=str(tmp_path / "data.png"), full_page=True)

    upload = tmp_path / "mine.tsv"
    upload.write_text("sentence\tlabel\na wonderful film\tpositive\na dull movie\tnegative\nit is fine\tpositive\n",
                      encoding="utf-8")
    page.set_input_files("#upload", str(upload))
    page.click("#upload-button")
    page.wait_for_function("() => [...document.querySelectorAll('#dataset option')].some((o) => "
                           "o.textContent.startsWith('mine.tsv') && o.selected)")
    page.wait_for_function("() => document.querySelectorAll('#rows tbody tr').length === 3")
    indices = page.locator("#rows tbody tr td:nth-child(1)").all_inner_texts()
    golds = page.locator("#rows tbody tr td:nth-child(5)").all_inner_texts()  # (still sorted by confidence)
    assert sorted(zip(map(int, indices), golds)) == [(0, "positive"), (1, "negative"), (2, "positive")]


def test_every_label_explained_at_once(page):
    page.select_option("#target", "all")
    explain(page, "a dull but moving film")
    headings = page.locator("#heatmaps h2").count()
    assert headings == 2  # one block per label
    explained = page.locator("#heatmaps table.meta").all_inner_texts()
    assert any("negative" in t.split("explained")[1] for t in explained)
    assert any("positive" in t.split("explained")[1] for t in explained)


def test_hostile_text_runs_nothing_in_any_view(page):
    explain(page, HOSTILE)
    shown = page.inner_text("#result")  # the result's heading is the text itself, then grid and heatmaps
    assert "<script>window.__xss=1</script>" in shown and "\\u202eevil" in shown and "\u202e" not in shown
    page.wait_for_selector("#overview canvas")
    assert page.locator("#result img, #result script, #attention img, #whatif img, #overview img").count() == 0
    page.select_option("#model", "random-mlm")
    page.fill("#text", HOSTILE)
    page.click("#explain-button")
    page.click("#mask-words span.mask-word[data-index='0']")
    page.wait_for_selector("#mask-result ol.mask-top li")
    assert page.locator("#mask-words img, #mask-result img").count() == 0
    assert "\\u202eevil" in page.inner_text("#mask-words") and "\u202e" not in page.inner_text("#mask-result")


def test_hostile_text_and_labels_in_the_what_if_and_the_metrics_run_nothing(page):
    explain(page, "a good film")
    page.fill("#whatif-text", HOSTILE)
    page.press("#whatif-text", "Control+Enter")
    page.wait_for_selector("#whatif-result .side[data-side=changed] .w")
    words = page.inner_text("#whatif-words") + page.inner_text("#whatif-result")
    assert "\\u202eevil" in words and "\u202e" not in words and "window.__xss=1" in words
    page.click("#tab-data")
    page.wait_for_selector("#confusion button.cell")
    assert '<img src=x onerror="window.__xss=1">\\u202egold' in page.inner_text("#confusion")  # shown as text
    page.evaluate("(label) => [...document.querySelectorAll('#confusion button.cell')]"
                  ".find((cell) => cell.dataset.gold === label).click()", HOSTILE_LABEL)
    page.wait_for_function("() => document.querySelectorAll('#rows tbody tr.row').length === 1")
    assert "\\u202egold" in page.inner_text("#filter-chip") and "\\u202egold" in page.inner_text("#rows tbody")
    page.click("#rows tbody tr.row")
    page.wait_for_selector("#row-detail span.w")
    assert page.locator("#data-tab img, #data-tab script, #whatif img").count() == 0


def test_the_tuned_composite_is_offered_only_for_a_model_that_has_one(page):
    """The shipped model has an lrp_composite.json: the preset "tuned" explains with it; the
    masked LM beside it has none, and the option is disabled there."""
    assert page.eval_on_selector("#preset option[value=tuned]", "(option) => option.disabled") is False
    page.select_option("#preset", "tuned")
    with page.expect_request("**/api/explain/stream") as sent:
        explain(page, "a gripping , beautifully acted film")
    assert sent.value.post_data_json["options"]["rule"] == "tuned"
    assert "LRP" in " ".join(heatmap_words(page))
    page.select_option("#model", index=1)
    assert page.eval_on_selector("#preset option[value=tuned]", "(option) => option.disabled") is True
    assert page.input_value("#preset") != "tuned"
