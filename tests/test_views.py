"""Terminal colours and the self-contained HTML report."""
from __future__ import annotations

import html
from html.parser import HTMLParser
from pathlib import Path

import torch

from bert_lrp import BertTokenizer
from bert_lrp.cli import explain as explain_cli
from bert_lrp.attribution.heatmaps import heatmap_svg
from bert_lrp.views.terminal import (ansi_background, coloured_words, colour_mode, printable, relevance_rgb, render_terminal,
                            symmetric_scale)
from bert_lrp.attribution.words import merge_word_pieces

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)


def test_colour_is_monotonic_in_relevance():
    scale = 2.0
    values = [i / 50 for i in range(-150, 151)]  # beyond the scale on both sides
    redness = [relevance_rgb(v, scale)[0] - relevance_rgb(v, scale)[2] for v in values]
    assert all(a <= b for a, b in zip(redness, redness[1:]))
    inside = [r for v, r in zip(values, redness) if -scale <= v <= scale]
    assert len(set(inside)) > 100 and inside == sorted(inside)
    assert relevance_rgb(0.0, scale) == (255, 255, 255)
    assert relevance_rgb(scale, scale) == (255, 0, 0)
    assert relevance_rgb(-scale, scale) == (0, 0, 255)
    # more relevance (either sign) never gets lighter
    for sign in (1, -1):
        lightness = [sum(relevance_rgb(sign * i / 10, 1.0)) for i in range(11)]
        assert lightness == sorted(lightness, reverse=True)


def test_symmetric_scale_and_zero_scores():
    assert symmetric_scale([0.5, -2.0, 1.0]) == 2.0
    assert symmetric_scale([0.0, 0.0]) == 1.0
    assert relevance_rgb(float("nan"), 1.0) == (255, 255, 255)


def test_terminal_words_with_and_without_colour():
    words = [("good", 0.5), ("bad", -0.25), ("film", 0.0)]
    plain = coloured_words(words, "none")
    assert plain == "good[+0.500] bad[-0.250] film[+0.000]"
    true = coloured_words(words, "truecolor")
    assert "\x1b[48;2;255;0;0m" in true and "\x1b[48;2;128;128;255m" in true and "good" in true
    cube = coloured_words(words, "256")
    assert "\x1b[48;5;196m" in cube  # pure red in the xterm cube
    assert ansi_background((255, 255, 255), "none") == ""


def test_colour_mode_follows_the_terminal(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLORTERM", "truecolor")
    assert colour_mode(Stream(False)) == "none"
    assert colour_mode(Stream(True)) == "truecolor"
    monkeypatch.setenv("COLORTERM", "")
    assert colour_mode(Stream(True)) == "256"
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_mode(Stream(True)) == "none"


def test_word_merge_sums_exactly(tmp_path):
    model_dir = make_model_dir(tmp_path / "m")
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    encoding = tokenizer(["the unbelievable film", "a bad movies"])
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(encoding["input_ids"].shape, generator=generator, dtype=torch.float64)
    for index in range(2):
        words = merge_word_pieces(scores[index], encoding, index)
        for word in words:
            total = 0.0
            for position in word["positions"]:
                total += float(scores[index, position])
            assert word["score"] == total
        special = [p for p, w in enumerate(encoding.word_ids[index]) if w is None]
        kept = [p for p in range(scores.shape[1]) if p not in special]
        assert abs(sum(w["score"] for w in words) - float(scores[index, kept].sum())) < 1e-12
    words = merge_word_pieces(scores[0], encoding, 0)
    assert [w["word"] for w in words] == ["the", "unbelievable", "film"]
    assert words[1]["pieces"] == ["un", "##believ", "##able"]


class Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text, self.attributes = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_is_self_contained_and_escaped(tmp_path):
    model_dir = make_model_dir(tmp_path / "m")
    target = tmp_path / "report.html"
    review = "a bad movie <script>alert(1)</script> & the film"
    assert explain_cli.main(["--model", str(model_dir), "--quiet", "--methods", "lrp,gi,gs,lat,rollout",
                             "--html", str(target), "--layer", "2", "--head", "3", review]) == 0
    text = target.read_text(encoding="utf-8")
    parser = Collector()
    parser.feed(text)
    parser.close()
    assert "script" not in parser.tags  # no script element, not even the review's
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert not any(tag in parser.tags for tag in ("link", "img", "iframe", "object"))
    assert not any(name in ("src", "href") for name, _ in parser.attributes)
    assert "@import" not in text and "url(" not in text
    assert "svg" in parser.tags and "details" in parser.tags and "summary" in parser.tags
    assert "attention layer 2 head 3" in text
    for title in ("LRP", "GI (gradient x input)", "GS (gradient)", "LAT", "rollout", "Relevance per layer"):
        assert title in text
    # every token of the review appears as text (escaped in the source, parsed back unchanged)
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    tokens = tokenizer(review).tokens[0]
    data = set(d.strip() for d in parser.text)
    for token in tokens:
        assert token in data, token
        assert html.escape(token) in text
    assert "&amp;" in text
    # no temporary file left behind
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_heatmap_escapes_labels():
    svg = heatmap_svg([[0.1, -0.2]], ["<row>"], ["<b>", "&"], "t<i>tle")
    assert "<row>" not in svg and "&lt;row&gt;" in svg and "&lt;b&gt;" in svg and "&amp;" in svg
    parser = Collector()
    parser.feed(svg)
    assert parser.tags.count("rect") == 2 and "b" not in parser.tags


def test_printable_shows_control_and_bidi_characters_as_escapes():
    assert printable("a\x1b]0;T\x07b") == "a\\x1b]0;T\\x07b"
    assert printable("x\u202ey\u2066z\u200f\u061c\x7f\x9b\t") == "x\\u202ey\\u2066z\\u200f\\u061c\\x7f\\x9b\\x09"
    assert printable("café, 東京, עברית") == "café, 東京, עברית"  # ordinary text is kept


def test_terminal_view_escapes_words_and_labels_in_every_mode():
    report = {"text": "ok \x1b[2J", "pair": None, "probabilities": {"pos\x07": 1.0}, "prediction": "pos\x07",
              "target": "pos\x07", "methods": ["lrp"], "conservation": {},
              "words": [{"word": "ok"}, {"word": "\u202eevil"}], "scores": {"lrp": {"words": [1.0, -1.0]}}}
    for mode in ("none", "256", "truecolor"):
        out = render_terminal(report, mode)
        assert "\\x1b[2J" in out and "\\u202eevil" in out and "pos\\x07" in out
        assert "\x07" not in out and "\u202e" not in out and "\x1b[2J" not in out
