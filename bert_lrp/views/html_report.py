"""One self-contained HTML file for explanations: no network, no external scripts, fonts or CSS.

Per example: prediction and probabilities; per method the sentence with word backgrounds scaled
to relevance (normalised per method, symmetric around 0) and a legend; the word pieces on demand
(``<details>``); a per-layer relevance heatmap (inline SVG); the attention map of one layer and
head (inline SVG). Every piece of text from the input goes through :func:`html.escape`.

The file stays bounded for long texts: the per-layer heatmaps show at most
:data:`MAX_HEATMAP_TOKENS` tokens, the attention map at most :data:`MAX_ATTENTION_TOKENS` (a
note says how many were left out; the word and word-piece views keep every token the model
read), and the example heading shows the first :data:`MAX_HEADING_CHARACTERS` characters of the
text.
"""
from __future__ import annotations

import html
from typing import List, Optional, Sequence

from .._text import printable
from .terminal import (method_title, relevance_rgb, shorten, symmetric_scale, target_word_shares, text_rgb,
                       word_scores)

MAX_HEATMAP_TOKENS = 128    # columns of a per-layer relevance heatmap
MAX_ATTENTION_TOKENS = 64   # rows and columns of the attention map (64 x 64 cells)
MAX_HEADING_CHARACTERS = 300

CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1150px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin: 18px 0 6px 0; }
.text { font-size: 16px; line-height: 2.1; }
.w { padding: 2px 3px; border-radius: 3px; margin: 0 1px; unicode-bidi: isolate; }
.p { padding: 1px 2px; border-radius: 2px; margin: 0 1px; font-family: monospace; font-size: 13px;
     unicode-bidi: isolate; }
.prob { display: flex; align-items: center; margin: 2px 0; font-size: 14px; }
.bar { background: #4a78c2; height: 12px; margin: 0 8px; }
.legend { display: inline-block; width: 180px; height: 12px; vertical-align: middle;
          background: linear-gradient(to right, rgb(0,0,255), rgb(255,255,255), rgb(255,0,0)); border: 1px solid #999; }
.small { font-size: 12px; color: #555; }
details { margin: 4px 0 8px 0; } summary { cursor: pointer; font-size: 13px; color: #444; }
table.meta td { padding: 1px 10px 1px 0; font-size: 14px; }
"""


def e(value) -> str:
    """``value`` escaped for HTML, with control characters and bidi controls shown as visible escapes
    (``\\x1b``, ``\\u202e``): a label or a word can neither inject markup nor reorder the page's text."""
    return html.escape(printable(value), quote=True)


def _style(score: float, scale: float) -> str:
    background = relevance_rgb(score, scale)
    foreground = text_rgb(background)
    return f"background: rgb{background}; color: rgb{foreground}"


def _spans(items: Sequence, scale: float, css_class: str, marked: Optional[int] = None) -> str:
    mark = "; outline: 2px solid #000"
    return " ".join(f'<span class="{css_class}" style="{_style(score, scale)}{mark if i == marked else ""}" '
                    f'title="{e(f"{score:+.4f}")}">{e(text)}</span>' for i, (text, score) in enumerate(items))


def legend(scale: float) -> str:
    return (f'<span class="small">{e(f"{-scale:+.3g}")} against</span> <span class="legend"></span> '
            f'<span class="small">for {e(f"{scale:+.3g}")}</span>')


def _probabilities(report: dict) -> str:
    rows = []
    for label, p in report["probabilities"].items():
        rows.append(f'<div class="prob"><span style="width:110px">{e(label)}</span>'
                    f'<span class="bar" style="width:{max(1, int(round(300 * p)))}px"></span>{p:.3f}</div>')
    return "".join(rows)


def heatmap_svg(matrix: Sequence[Sequence[float]], row_labels: Sequence[str], column_labels: Sequence[str],
                title: str, symmetric: bool = True, per_row: bool = False, cell: int = 22,
                scale_columns: Optional[Sequence[int]] = None) -> str:
    """An inline SVG heatmap. ``symmetric``: blue-white-red around 0; else white-to-red from 0 to the
    maximum. ``per_row``: each row normalised on its own. ``scale_columns``: the columns that set the
    scale (others are clipped), e.g. to keep [CLS] from washing out the words."""
    rows, columns = len(matrix), len(column_labels)
    left = 10 + 7 * max((len(r) for r in row_labels), default=1)
    top = 20 + 7 * max((len(c) for c in column_labels), default=1)
    width, height = left + cell * columns + 10, top + cell * rows + 10
    overall = symmetric_scale(v for row in matrix for v in row)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}">',
             f'<text x="4" y="14" font-size="12" fill="#333">{e(title)}</text>']
    for j, label in enumerate(column_labels):
        x, y = left + cell * j + cell // 2 + 4, top - 4
        parts.append(f'<text x="{x}" y="{y}" font-size="11" transform="rotate(-60 {x} {y})" '
                     f'font-family="monospace">{e(label)}</text>')
    for i, row in enumerate(matrix):
        y = top + cell * i
        parts.append(f'<text x="{left - 4}" y="{y + cell * 0.7:.1f}" font-size="11" text-anchor="end" '
                     f'font-family="monospace">{e(row_labels[i])}</text>')
        shown_row = [row[j] for j in scale_columns] if scale_columns else row
        scale = symmetric_scale(shown_row) if per_row else overall
        for j, value in enumerate(row):
            shown = value if symmetric else max(0.0, value)
            colour = relevance_rgb(shown, scale)
            parts.append(f'<rect x="{left + cell * j}" y="{y}" width="{cell}" height="{cell}" '
                         f'fill="rgb{colour}" stroke="#eee"><title>{e(row_labels[i])} / {e(column_labels[j])}: '
                         f'{value:.4g}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _cut_note(shown: int, total: int, what: str) -> str:
    if shown >= total:
        return ""
    return (f'<p class="small">{what} shows the first {shown:,} of the {total:,} tokens '
            f"({total - shown:,} left out to keep this file small).</p>")


def example_html(report: dict, number: int) -> str:
    """One example of the report (a record of `explain --json`, per-layer scores and attention
    optional): heading, prediction, per method the word heatmap with its legend and pieces."""
    out: List[str] = []
    text, pair = shorten(report["text"], MAX_HEADING_CHARACTERS), report.get("pair")
    heading = text if pair is None else f"{text} || {shorten(pair, MAX_HEADING_CHARACTERS)}"
    out.append(f"<h2>Example {number}: {e(heading)}</h2>")
    if report.get("dropped_tokens"):
        kept = len(report["tokens"])
        out.append(f'<p class="small">The text has {kept + report["dropped_tokens"]:,} tokens; the model read '
                   f'the first {kept:,} ({report["dropped_tokens"]:,} dropped).</p>')
    meta = [("prediction", report["prediction"]), ("explained", report["target"])]
    if report.get("target_word") is not None:
        tw = report["target_word"]
        meta.insert(0, ("word", f"{tw['word']} (word {tw['index']}, token {tw['position']})"))
    out.append('<table class="meta">' + "".join(f"<tr><td>{e(k)}</td><td><b>{e(v)}</b></td></tr>" for k, v in meta)
               + "</table>")
    out.append(_probabilities(report))
    shares = target_word_shares(report)
    if shares:
        out.append("<p>Relevance of the word by embedding part (LRP): " + ", ".join(
            f"{e(name)} <b>{value:+.4f}</b>" for name, value in shares.items()) + "</p>")
    for method in report["methods"]:
        entry = report["scores"][method]
        words = word_scores(report, method)
        scale = symmetric_scale(s for _, s in words)
        out.append(f"<h3>{e(method_title(method))}</h3>")
        marked = report["target_word"]["index"] if report.get("target_word") else None
        out.append(f'<div class="text">{_spans(words, scale, "w", marked)}</div>')
        out.append(f"<div>{legend(scale)}")
        if method in report.get("conservation", {}):
            out.append(f' <span class="small">conservation {report["conservation"][method]:.4f}</span>')
        out.append("</div>")
        tokens = [(t, s) for t, s in zip(report["tokens"], entry["tokens"])]
        token_scale = symmetric_scale(s for _, s in tokens)
        out.append(f"<details><summary>word pieces</summary><div class=\"text\">{_spans(tokens, token_scale, 'p')}"
                   f"</div>{legend(token_scale)}</details>")
    tokens = report["tokens"]
    for method, layers in report.get("layer_scores", {}).items():
        labels = [f"layer {i + 1}" for i in range(len(layers))]
        shown = min(len(tokens), MAX_HEATMAP_TOKENS)
        words = [p for w in report["words"] for p in w["pieces"] if p < shown]
        out.append(f"<h3>Relevance per layer ({e(method_title(method))})</h3>")
        out.append('<p class="small">Token relevance at each encoder layer output (hidden state x gradient, '
                   "summed over units); each row normalised on its own, over the words ([CLS] and [SEP] "
                   "clipped). Hover a cell for its value.</p>")
        out.append(_cut_note(shown, len(tokens), "The heatmap"))
        out.append(heatmap_svg([row[:shown] for row in layers], labels, tokens[:shown],
                               f"{method_title(method)} per layer", per_row=True, scale_columns=words))
        totals = [sum(row) for row in layers]
        out.append('<p class="small">Total per layer: ' + ", ".join(
            f"{i + 1}: {total:+.3g}" for i, total in enumerate(totals)) + "</p>")
    attention = report.get("attention")
    if attention is not None:
        out.append(f"<h3>Attention, layer {attention['layer']} head {attention['head']}</h3>")
        out.append('<p class="small">Row: the attending token (query); column: the token attended to (key).</p>')
        shown = min(len(tokens), len(attention["matrix"]), MAX_ATTENTION_TOKENS)
        out.append(_cut_note(shown, len(tokens), "The attention map"))
        matrix = [row[:shown] for row in attention["matrix"][:shown]]
        out.append(heatmap_svg(matrix, tokens[:shown], tokens[:shown],
                               f"attention layer {attention['layer']} head {attention['head']}", symmetric=False))
    return "\n".join(out)


def render_html(reports: Sequence[dict], title: str = "bert-lrp explanations", model: Optional[str] = None) -> str:
    body = [f"<h1>{e(title)}</h1>"]
    if model:
        body.append(f'<p class="small">model: {e(model)}</p>')
    body.append('<p class="small">Red: relevance for the explained label; blue: against it. Colours are normalised '
                "per method, symmetric around 0. Hover a word for its score.</p>")
    body += [example_html(report, i + 1) for i, report in enumerate(reports)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
