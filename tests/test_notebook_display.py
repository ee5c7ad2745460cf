"""Explanations show themselves in a notebook (``_repr_html_``, ``show()``), without a server.

* ``TextExplanation._repr_html_`` (from :func:`bert_lrp.explain_texts`) is well-formed HTML with
  one example block per explained label and, in it, one word heatmap per method, its words in the
  text's order and each word's pieces on hover;
* it is the component of the HTML report and the explorer: the explorer's ``views.html`` for the
  same request is in it verbatim;
* user text and label names are escaped (no element, attribute or control character of theirs
  survives) and the style applies inside the block only, never to the notebook around it;
* ``Explanation._repr_html_`` (from :func:`bert_lrp.explain` on a batch) shows every example, with
  word scores that are the Explanation's own ``word_scores``;
* ``show()`` hands the same HTML to IPython's display, and says what to do without IPython;
* outputs are named by the model's labels, never ``output 0``; the list ``explain_texts`` returns
  shows as one compact table (a row per text: prediction by name and probability, gold, each
  method's top words), and printing explanations shows one line each, never a tensor.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import types
from html.parser import HTMLParser

import pytest

from bert_lrp import AutoTokenizer, explain, explain_texts
from bert_lrp.attribution.heatmaps import NOTEBOOK_CLASS
from bert_lrp.models.loading import load_model

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)

VOID = {"br", "hr", "img", "input", "meta", "link", "rect", "line"}
HOSTILE = ['<script>window.__xss=1</script>', '"><img src=x onerror="window.__xss=1">', "\u202eevil\u202c",
           "\x1b[31mred\x1b[0m"]


class Tree(HTMLParser):
    """Checks that every element is closed in order; keeps tags, attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open, self.tags, self.text, self.problems = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def parsed(html: str) -> Tree:
    tree = Tree()
    tree.feed(html)
    tree.close()
    assert tree.problems == [] and tree.open == [], (tree.problems, tree.open)
    return tree


def heatmaps(html: str) -> list:
    """Per method block: the words of the ``class="w"`` spans and their hover titles, in order."""
    blocks = re.findall(r'<div class="text">(.*?)</div>', html)
    return [re.findall(r'<span class="w" style="[^"]*" title="([^"]*)">([^<]*)</span>', block) for block in blocks
            if 'class="w"' in block]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    folder = make_model_dir(tmp_path_factory.mktemp("notebook") / "model")
    model, tokenizer = load_model(folder)
    return folder, model, tokenizer


def test_a_text_explanation_shows_one_heatmap_per_method_in_word_order(sentiment):
    _, model, tokenizer = sentiment
    [explained] = explain_texts(model, tokenizer, ["the film is unbelievable"], methods=["lrp", "gi", "gs"])
    html = explained._repr_html_()
    tree = parsed(html)
    assert tree.tags[0] == ("div", {"class": NOTEBOOK_CLASS})
    assert html.count("<h2>") == 1  # one example: one explained label
    maps = heatmaps(html)
    assert len(maps) == 3  # lrp, gi, gs
    record = explained.record()
    for method, spans in zip(["lrp", "gradient_x_input", "gradient"], maps):
        assert [word for _, word in spans] == ["the", "film", "is", "unbelievable"]
        scores = [float(title.split(" | ")[0]) for title, _ in spans]
        assert scores == pytest.approx(record["scores"][method]["words"], abs=5e-5)
    # the word pieces of "unbelievable", each with its score, on hover
    title = maps[0][3][0]
    assert re.fullmatch(r"[+-]\d\.\d{4} \| un [+-]\d\.\d{4}  ##believ [+-]\d\.\d{4}  ##able [+-]\d\.\d{4}", title)


def test_every_label_gets_its_block_with_target_all(sentiment):
    _, model, tokenizer = sentiment
    [explained] = explain_texts(model, tokenizer, ["a bad movie"], methods=["lrp", "gi"], target="all")
    html = explained._repr_html_()
    parsed(html)
    assert html.count("<h2>") == 2  # negative, positive
    assert len(heatmaps(html)) == 2 * 2
    assert "<td>explained</td><td><b>negative</b></td>" in html and "<td>explained</td><td><b>positive</b></td>" in html


def test_the_notebook_shows_the_explorers_component(sentiment):
    from starlette.testclient import TestClient
    from bert_lrp.views.explorer.app import create_app
    from bert_lrp.views.explorer.explorer import Explorer

    folder, model, tokenizer = sentiment
    client = TestClient(create_app(Explorer([(folder, model, tokenizer)])))
    page = client.post("/api/explain", json={"text": "a great film", "methods": ["lrp", "gi"]}).json()
    [explained] = explain_texts(model, tokenizer, ["a great film"], methods=["lrp", "gi"], layers=True)
    assert page["views"]["html"] in explained._repr_html_()


def test_hostile_text_and_label_names_are_escaped_and_the_style_stays_inside(sentiment, tmp_path):
    folder = tmp_path / "hostile"
    shutil.copytree(sentiment[0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": HOSTILE[0], "1": HOSTILE[1]}, {HOSTILE[0]: 0, HOSTILE[1]: 1}
    (folder / "config.json").write_text(json.dumps(config))
    model, tokenizer = load_model(folder)
    [explained] = explain_texts(model, tokenizer, [" ".join(HOSTILE)], methods=["lrp", "gi"], target="all")
    html = explained._repr_html_()
    tree = parsed(html)
    assert {tag for tag, _ in tree.tags} <= {"div", "style", "h2", "h3", "p", "table", "tr", "td", "b", "span",
                                             "details", "summary"}
    assert all(not name.startswith("on") for _, attributes in tree.tags for name in attributes)
    assert "\x1b" not in html and "\u202e" not in html
    assert "\\x1b[31mred" in html and "\\u202eevil" in html  # shown as visible escapes
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{", style) for s in rule.split(",")]
    assert selectors and all(s.startswith("." + NOTEBOOK_CLASS) for s in selectors)


def test_a_batch_explanation_shows_every_example(sentiment):
    _, model, tokenizer = sentiment
    batch = tokenizer(["the film is unbelievable", "a bad movie"])
    explanation = explain(model, batch, methods=["lrp", "gi"])
    html = explanation._repr_html_()
    parsed(html)
    assert html.count("<h2>") == 2
    maps = heatmaps(html)
    assert len(maps) == 2 * 2
    for index, method in [(0, "lrp"), (0, "gi"), (1, "lrp"), (1, "gi")]:
        spans = maps[2 * index + (method == "gi")]
        expected = explanation.word_scores(method, index)
        assert [word for _, word in spans] == [w["word"] for w in expected]
        assert [float(t.split(" | ")[0]) for t, _ in spans] == pytest.approx([w["score"] for w in expected], abs=5e-5)
    names = model.config.labels_by_id()
    predicted = explanation.prediction.tolist()
    assert f"<td>prediction</td><td><b>{names[predicted[0]]}</b></td>" in html
    assert "output 0" not in html and "output 1" not in html


def test_a_list_of_explanations_is_a_compact_table_with_label_names(sentiment):
    _, model, tokenizer = sentiment
    texts = ["the film is unbelievable", "a bad movie", HOSTILE[0]]
    explained = explain_texts(model, tokenizer, texts, methods=["lrp", "gi"])
    html = explained._repr_html_()
    tree = parsed(html)
    assert {tag for tag, _ in tree.tags} == {"table", "thead", "tbody", "tr", "th", "td"}
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    assert len(rows) == 1 + len(texts)
    header = re.findall(r"<th>(.*?)</th>", rows[0])
    assert header == ["#", "text", "prediction", "gold", "lrp", "gradient_x_input"]
    names = model.config.labels_by_id()
    for row, item in zip(rows[1:], explained):
        cells = re.findall(r"<td>(.*?)</td>", row)
        record = item.record()
        probability = record["probabilities"][record["prediction"]]
        assert cells[2] == f"{names[item.prediction]} ({probability:.2f})"
        for cell, method in zip(cells[4:], ["lrp", "gradient_x_input"]):
            ranked = sorted(zip(record["scores"][method]["words"], [w["word"] for w in record["words"]]),
                            key=lambda pair: -pair[0])
            assert cell.split(", ")[0] == ranked[0][1].replace("<", "&lt;").replace(">", "&gt;")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_printing_explanations_shows_a_line_each_never_a_tensor(sentiment):
    _, model, tokenizer = sentiment
    explained = explain_texts(model, tokenizer, ["the film is unbelievable", "a bad movie"], methods=["lrp"])
    names = model.config.labels_by_id()
    printed = repr(explained)
    assert "tensor(" not in printed and printed.count("TextExplanation(") == 2
    assert f"prediction={names[explained[0].prediction]!r}" in printed
    batch = explain(model, tokenizer(["the film is unbelievable", "a bad movie"]), methods=["lrp", "gi"])
    line = repr(batch)
    assert "tensor(" not in line and "\n" not in line
    assert line == (f"Explanation(methods=['lrp', 'gradient_x_input'], batch=2, seq={batch.attention_mask.shape[1]}, "
                    f"predicted=[{', '.join(names[p] for p in batch.prediction.tolist())}])")


def test_show_hands_the_html_to_ipython(sentiment, monkeypatch):
    _, model, tokenizer = sentiment
    [explained] = explain_texts(model, tokenizer, ["a great film"], methods=["lrp"])
    shown = []
    display = types.ModuleType("IPython.display")
    display.HTML = lambda text: ("HTML", text)
    display.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    explained.show()
    assert shown == [("HTML", explained._repr_html_())]


def test_show_without_ipython_says_what_to_use(sentiment, monkeypatch):
    _, model, tokenizer = sentiment
    batch = tokenizer(["a great film"])
    explanation = explain(model, batch, methods=["lrp"])
    monkeypatch.setitem(sys.modules, "IPython", None)
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    with pytest.raises(RuntimeError, match=r"IPython, which is not installed; _repr_html_\(\) returns"):
        explanation.show()
