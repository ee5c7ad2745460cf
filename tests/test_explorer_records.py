"""Stored markup cannot reach a page or a saved report, by construction (issue 29):

* records read from a file a server shows are checked against the record schema when read:
  unknown fields dropped, every known field of its type; a bad record is its own row's error;
* every value drawn into HTML goes through one escaping component: hostile values in EVERY field
  of a record (and of the views a report saves) leave no element or attribute of theirs in the
  explorer's views or in the saved report;
* a saved report forbids scripts (a Content-Security-Policy ``<meta>``), heads each example by
  its own number and text, saves the per-layer relevance, the attention head (purple) and the
  agreement shown;
* every coloured word's text is black or white by its background, at least 4.5:1 over the scale.
"""
from __future__ import annotations

import copy
import html
import json
import re
from html.parser import HTMLParser

import pytest

from bert_lrp.attribution import heatmaps
from bert_lrp.data.records import read_explanation_rows
from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.datasets import read_dataset
from bert_lrp.views.explorer.explorer import ApiError, Explorer

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)

HOSTILE = ('"><img src=x onerror="window.__xss=1"><meta http-equiv="refresh" content="0;url=http://evil.example">'
           "<script>window.__xss=2</script>")
OUR_TAGS = {"h1", "h2", "h3", "p", "table", "tr", "td", "th", "b", "div", "span", "details", "summary", "svg",
            "rect", "text", "title", "html", "head", "meta", "style", "body"}
OUR_ATTRIBUTES = {"class", "style", "title", "xmlns", "width", "height", "viewbox", "role", "aria-label", "x", "y",
                  "font-size", "fill", "transform", "font-family", "text-anchor", "stroke", "lang", "charset",
                  "http-equiv", "content"}


class Elements(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def assert_none_of_theirs(page: str) -> None:
    """No element or attribute of HOSTILE survives in ``html``: only the tags and attributes the
    views write, no event handler, no refresh, no script; the only metas are the report's own."""
    parser = Elements()
    parser.feed(page)
    assert {tag for tag, _ in parser.tags} <= OUR_TAGS
    for tag, attributes in parser.tags:
        assert set(attributes) <= OUR_ATTRIBUTES, (tag, attributes)
        assert "__xss" not in attributes.get("style", "") and "__xss" not in attributes.get("class", "")
        if tag == "meta":
            assert attributes in ({"charset": "utf-8"}, {"http-equiv": "Content-Security-Policy",
                                                         "content": attributes.get("content")})
            assert "refresh" not in json.dumps(attributes).lower()
    assert "<script" not in page and "<img" not in page and "onerror=" not in page.replace("onerror=&quot;", "")


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    folder = make_model_dir(tmp_path_factory.mktemp("records") / "sequence")
    explorer = Explorer([(folder, *load_model(folder))])
    yield explorer
    explorer.close()


@pytest.fixture(scope="module")
def record(explorer):
    """A full record: a pair, a gold label, LRP's embedding shares, per-layer scores, one attention head."""
    payload = explorer.explain({"text": "a great film", "pair": "the movie", "methods": ["lrp", "gi"]})
    record = payload["examples"][0]
    record["label"] = "positive"
    record["layer_scores"] = payload["views"]["layers"]
    head = explorer.attention({"text": "a great film", "pair": "the movie", "layer": 1, "head": 2})
    record["attention"] = {"layer": 2, "head": 3, "matrix": head["attention"]}
    return record


def leaf_paths(value, path=()):
    """Every leaf's path; of a list of numbers only its first item (they are checked alike)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, path + (key,))
    elif isinstance(value, list):
        numbers = value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        for index, item in enumerate(value[:1] if numbers else value):
            yield from leaf_paths(item, path + (index,))
    else:
        yield path


def replaced(record, path, value):
    out = copy.deepcopy(record)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return out


def test_hostile_values_in_every_field_leave_nothing_of_theirs_in_views_or_reports(explorer, record, tmp_path):
    paths = list(leaf_paths(record))
    assert len(paths) > 40  # every field of the record, numbers and strings alike
    answered = failed = 0
    for path in paths:
        variant = replaced(record, path, HOSTILE)
        data = tmp_path / "data.jsonl"
        data.write_text(json.dumps(record) + "\n" + json.dumps(variant) + "\n", encoding="utf-8")
        explorer.datasets["9"] = read_dataset("9", data)
        good = explorer.row("9", "0")  # the other record still answers
        assert good["record"] == record
        row = explorer.row("9", "1")
        if "error" in row["record"]:  # a number, a position or a method name that is markup: this row's error
            failed += 1
            assert row["views"]["html"] == "" and "\n" not in row["record"]["error"]
            with pytest.raises(ApiError) as refused:
                explorer.report({"examples": [variant]})
            assert (refused.value.status, refused.value.field) == (400, "examples")
        else:  # a text, a word, a piece: kept as text and drawn escaped
            answered += 1
            assert_none_of_theirs(row["views"]["html"])
            assert_none_of_theirs(explorer.report({"examples": [row["record"]]}))
    assert answered >= 5 and failed >= 20
    del explorer.datasets["9"]


def test_unknown_fields_are_dropped_at_every_level_when_read(record, tmp_path):
    variant = copy.deepcopy(record)
    fixed = [(), ("words", 0), ("words", 2), ("scores", "lrp"), ("scores", "gradient_x_input"), ("attention",)]
    for path in fixed:  # the objects whose fields the schema names (others are keyed by labels or methods)
        parent = variant
        for key in path:
            parent = parent[key]
        parent["onclick"] = HOSTILE
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(variant) + "\n", encoding="utf-8")
    [read] = read_explanation_rows(data)
    assert read == record and "onclick" not in json.dumps(read)


def test_a_line_that_is_no_record_is_that_rows_error_and_the_others_are_read(record, tmp_path):
    data = tmp_path / "data.jsonl"
    lines = [json.dumps(record), "{not json", "17", json.dumps({**record, "attention": {"layer": "<b>", "head": 1,
                                                                                    "matrix": []}}),
             json.dumps(record)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_explanation_rows(data)
    assert rows[0] == record and rows[4] == record
    assert [("error" in row) for row in rows] == [False, True, True, True, False]
    assert "line 2" in rows[1]["error"] and "not valid JSON" in rows[1]["error"]
    assert "line 4" in rows[3]["error"] and "attention.layer" in rows[3]["error"]
    assert rows[3]["text"] == record["text"] and rows[1]["text"] == ""


def test_hostile_views_of_a_report_are_escaped_or_refused(explorer, record):
    tokens = [HOSTILE] * 3
    view = {"layers": {"lrp": record["layer_scores"]["lrp"]},
            "agreement": {"methods": [HOSTILE, "lrp"], "spearman": [[1.0, 0.5], [0.5, None]]},
            "attention": {"layer": 0, "head": 1, "tokens": tokens, "attention": [[0.2, 0.3, 0.5]] * 3},
            "onload": HOSTILE}
    assert_none_of_theirs(explorer.report({"examples": [record], "views": [view]}))
    for bad in ({"attention": {**view["attention"], "layer": "<b>"}}, {"layers": {"lrp": [[HOSTILE]]}},
                {"agreement": {"methods": ["lrp"], "spearman": [[HOSTILE]]}}, HOSTILE):
        with pytest.raises(ApiError) as refused:
            explorer.report({"examples": [record], "views": [bad]})
        assert (refused.value.status, refused.value.field) == (400, "views")


def test_a_report_forbids_scripts_and_saves_what_the_page_shows(explorer, record):
    second = explorer.explain({"text": "the bad movie", "methods": ["lrp", "gi"]})["examples"][0]
    shown = {"layers": {"lrp": record["layer_scores"]["lrp"]},
             "agreement": {"methods": ["lrp", "gradient_x_input"], "spearman": [[1.0, -0.25], [-0.25, 1.0]]},
             "attention": {"layer": 1, "head": 2, "tokens": record["tokens"], "attention": record["attention"]["matrix"]}}
    views = [shown, None]
    report = explorer.report({"examples": [{k: v for k, v in record.items() if k not in ("layer_scores", "attention")},
                                           second], "views": views})
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', report)
    policy = html.unescape(csp.group(1))  # as the browser reads the attribute
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert report.index("Content-Security-Policy") < report.index("<title>")
    headings = re.findall(r"<h2>(.*?)</h2>", report)
    assert headings[0].startswith("Example 1: a great film || the movie")
    assert headings[1].startswith("Example 2: the bad movie")
    assert "Relevance per layer (LRP)" in report  # the per-layer relevance shown
    assert "Attention, layer 2 head 3" in report  # the head shown (layer 1, head 2 counted from 0)
    assert "Agreement of the methods" in report and "-0.25" in report
    assert report.count("Relevance per layer") == 1  # the second example saved no views


def colour(text):
    return tuple(int(c) for c in re.findall(r"\d+", text))


def test_attention_is_drawn_in_the_one_purple_scale_not_red(record):
    drawn = heatmaps.attention_html(2, 3, record["tokens"], record["attention"]["matrix"])
    fills = [colour(fill) for fill in re.findall(r'<rect [^>]*fill="([^"]*)"', drawn)]
    assert fills
    purple = heatmaps.ATTENTION_RGB
    for r, g, b in fills:  # on the line from white to rgb(106, 61, 154)
        w = (255 - g) / (255 - purple[1])
        assert abs(r - (255 - w * (255 - purple[0]))) <= 1 and abs(b - (255 - w * (255 - purple[2]))) <= 1
    assert max((255 - g) / (255 - purple[1]) for _, g, _ in fills) == pytest.approx(1.0, abs=0.01)


def test_every_colour_of_the_scales_has_text_at_least_4_5_to_1():
    steps = [i / 500 for i in range(-500, 501)]
    backgrounds = [heatmaps.relevance_rgb(v, 1.0) for v in steps] + [heatmaps.attention_rgb(abs(v)) for v in steps]
    ratios = [heatmaps.contrast_ratio(bg, heatmaps.text_rgb(bg)) for bg in backgrounds]
    assert min(ratios) >= 4.5
    assert heatmaps.text_rgb((255, 67, 67)) == (0, 0, 0)  # white on it was 3.4:1
    assert heatmaps.contrast_ratio((255, 255, 255), (0, 0, 0)) == pytest.approx(21)


def test_every_coloured_word_of_a_view_reads_at_least_4_5_to_1(explorer):
    payload = explorer.explain({"text": "the film is not boring , very good and great", "methods": ["lrp", "gi", "gs"]})
    styles = re.findall(r'class="[wp]" style="background: (rgb\([^)]*\)); color: (rgb\([^)]*\))',
                        payload["views"]["html"])
    assert len(styles) > 20
    assert min(heatmaps.contrast_ratio(colour(bg), colour(fg)) for bg, fg in styles) >= 4.5
