"""A record's HTML heatmaps: the one component that draws an explanation in the HTML report, the
explorer's page and a notebook (``TextExplanation._repr_html_``).

It lives with the records (not in :mod:`bert_lrp.views`) so that an explanation can show itself
in Jupyter without the attribution layer importing the views.

Colours: red for relevance *for* the explained output, blue *against*, white at 0. Intensity is
``|score| / scale`` (clipped to 1) with ``scale`` the largest absolute word score of the method, so
each method is normalised on its own, symmetrically around 0. The "redness" (red minus blue
channel) is ``255 * score / scale``: strictly increasing in the score.

Every piece of text that comes from the input (texts, words, word pieces, label names) goes
through :func:`e`: HTML-escaped, with control and bidi characters shown as visible escapes. Long
texts stay bounded: the per-layer heatmaps show at most :data:`MAX_HEATMAP_TOKENS` tokens, the
attention map at most :data:`MAX_ATTENTION_TOKENS` (a note says how many were left out; the word
and word-piece views keep every token the model read), the heading the first
:data:`MAX_HEADING_CHARACTERS` characters of the text.
"""
from __future__ import annotations

import functools
import html
import math
import re
from typing import Iterable, List, Optional, Sequence, Tuple

from .._text import printable, shorten
from . import registry

RGB = Tuple[int, int, int]

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
table.agreement { border-collapse: collapse; font-size: 13px; }
table.agreement th, table.agreement td { padding: 3px 8px; border: 1px solid #ddd; text-align: center; }
table.meta td { padding: 1px 10px 1px 0; font-size: 14px; }
"""


def method_title(method: str) -> str:
    """A method's label from the registry (other names, e.g. ``random``, as they are)."""
    return registry.label(method)


def word_scores(record: dict, method: str) -> List[Tuple[str, float]]:
    """``(word, score)`` of ``method`` for every word of a record
    (:meth:`bert_lrp.attribution.road.TextExplanation.record`, one label)."""
    return [(w["word"], s) for w, s in zip(record["words"], record["scores"][method]["words"])]


def target_word_shares(record: dict) -> Optional[dict]:
    """Token classification: the explained word's LRP relevance by embedding part
    (``{"word", "position", "token_type"}``), from the first method that has shares."""
    target, shares = record.get("target_word"), record.get("embedding_shares")
    if target is None or not shares:
        return None
    parts = next(iter(shares.values()))
    return {part: values[target["index"]] for part, values in parts.items()}


def symmetric_scale(scores: Iterable[float]) -> float:
    """Largest absolute score (1.0 when all are 0, so that everything maps to white)."""
    values = [abs(float(s)) for s in scores if math.isfinite(float(s))]
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def intensity(score: float, scale: float) -> float:
    """Signed intensity in [-1, 1]: ``score / scale`` clipped."""
    if not math.isfinite(score) or scale <= 0:
        return 0.0
    return max(-1.0, min(1.0, score / scale))


def relevance_rgb(score: float, scale: float) -> RGB:
    """White at 0, pure red (255, 0, 0) at +scale, pure blue (0, 0, 255) at -scale."""
    a = intensity(score, scale)
    fade = int(round(255 * (1 - abs(a))))
    return (255, fade, fade) if a >= 0 else (fade, fade, 255)


ATTENTION_RGB: RGB = (106, 61, 154)  # the one purple of attention weights, page and report alike


def attention_rgb(weight: float, scale: float = 1.0) -> RGB:
    """An attention weight's colour: :data:`ATTENTION_RGB` at opacity ``weight / scale`` (clipped to
    0..1) over white, i.e. ``rgba(106, 61, 154, w)`` on a white page."""
    w = 0.0 if not math.isfinite(weight) or scale <= 0 else max(0.0, min(1.0, weight / scale))
    return tuple(int(round(255 - w * (255 - c))) for c in ATTENTION_RGB)  # type: ignore[return-value]


def luminance(rgb: RGB) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0: black, 1: white)."""
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: RGB, b: RGB) -> float:
    """WCAG 2 contrast ratio of two colours, 1..21."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


_PLAIN = re.compile(r"[A-Za-z0-9 .,:;+\-_()#%]*")  # ASCII that means nothing to HTML and is printable


@functools.lru_cache(maxsize=4096)  # a pure function of the colour; a view asks for the same few many times
def text_rgb(background: RGB) -> RGB:
    """Black or white text, whichever has the higher contrast ratio on ``background`` (at least
    4.58:1 for every background: the two ratios multiply to 21)."""
    black, white = (0, 0, 0), (255, 255, 255)
    return black if contrast_ratio(background, black) >= contrast_ratio(background, white) else white


def e(value) -> str:
    """THE escaping of everything this module writes into HTML (text, attribute values, numbers):
    ``value`` as text, HTML-escaped, with control characters and bidi controls shown as visible
    escapes (``\\x1b``, ``\\u202e``): a label or a word can neither inject markup nor reorder the page's text.
    Text made only of letters, digits, spaces and ``.,:;+-_()#%`` needs neither and is returned as it
    is (most values are numbers and colours: this keeps a view's rendering cheap)."""
    if type(value) is int:  # a coordinate or a size (bool, an int subclass, goes the long way)
        return str(value)
    text = value if isinstance(value, str) else str(value)
    if _PLAIN.fullmatch(text):
        return text
    return html.escape(printable(text), quote=True)


def rgb_css(colour: RGB) -> str:
    """``rgb(r, g, b)`` of a colour (escaped like every value)."""
    return e("rgb({}, {}, {})".format(*(int(c) for c in colour)))


def _style(background: RGB) -> str:
    return f"background: {rgb_css(background)}; color: {rgb_css(text_rgb(background))}"


def _spans(items: Sequence, scale: float, css_class: str, marked: Optional[int] = None,
           titles: Optional[Sequence[str]] = None) -> str:
    """``items`` ``[(text, score)]`` as coloured spans; hovering one shows its score (and ``titles[i]``)."""
    mark = "; outline: 2px solid #000"
    return " ".join(f'<span class="{e(css_class)}" style="{_style(relevance_rgb(score, scale))}'
                    f'{mark if i == marked else ""}" '
                    f'title="{e(f"{score:+.4f}" + (f" | {titles[i]}" if titles else ""))}">{e(text)}</span>'
                    for i, (text, score) in enumerate(items))


def _piece_titles(report: dict, method: str) -> List[str]:
    """Per word, its word pieces and their scores, e.g. ``un -0.0210  ##watch +0.3102``."""
    tokens, scores = report["tokens"], report["scores"][method]["tokens"]
    return ["  ".join(f"{tokens[p]} {scores[p]:+.4f}" for p in word["pieces"]) for word in report["words"]]


def legend(scale: float) -> str:
    return (f'<span class="small">{e(f"{-scale:+.3g}")} against</span> <span class="legend"></span> '
            f'<span class="small">for {e(f"{scale:+.3g}")}</span>')


def _probabilities(report: dict) -> str:
    rows = []
    for label, p in report["probabilities"].items():
        width = max(1, int(round(300 * p))) if math.isfinite(p) else 1
        rows.append(f'<div class="prob"><span style="width:110px">{e(label)}</span>'
                    f'<span class="bar" style="width:{e(width)}px"></span>{e(f"{p:.3f}")}</div>')
    return "".join(rows)


def heatmap_svg(matrix: Sequence[Sequence[float]], row_labels: Sequence[str], column_labels: Sequence[str],
                title: str, symmetric: bool = True, per_row: bool = False, cell: int = 22,
                scale_columns: Optional[Sequence[int]] = None, palette: str = "relevance") -> str:
    """An inline SVG heatmap. ``symmetric``: blue-white-red around 0; else white-to-red from 0 to the
    maximum. ``per_row``: each row normalised on its own. ``scale_columns``: the columns that set the
    scale (others are clipped), e.g. to keep [CLS] from washing out the words. ``palette="attention"``:
    white to the attention purple (:func:`attention_rgb`) from 0 to the maximum."""
    rows, columns = len(matrix), len(column_labels)
    left = 10 + 7 * max((len(r) for r in row_labels), default=1)
    top = 20 + 7 * max((len(c) for c in column_labels), default=1)
    width, height = left + cell * columns + 10, top + cell * rows + 10
    overall = symmetric_scale(v for row in matrix for v in row)
    row_names, column_names = [e(label) for label in row_labels], [e(label) for label in column_labels]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{e(width)}" height="{e(height)}" '
             f'viewBox="0 0 {e(width)} {e(height)}" role="img" aria-label="{e(title)}">',
             f'<text x="4" y="14" font-size="12" fill="#333">{e(title)}</text>']
    for j, name in enumerate(column_names):
        x, y = left + cell * j + cell // 2 + 4, top - 4
        parts.append(f'<text x="{e(x)}" y="{e(y)}" font-size="11" transform="rotate(-60 {e(x)} {e(y)})" '
                     f'font-family="monospace">{name}</text>')
    for i, row in enumerate(matrix):
        y = top + cell * i
        parts.append(f'<text x="{e(left - 4)}" y="{e(f"{y + cell * 0.7:.1f}")}" font-size="11" text-anchor="end" '
                     f'font-family="monospace">{row_names[i]}</text>')
        shown_row = [row[j] for j in scale_columns] if scale_columns else row
        scale = symmetric_scale(shown_row) if per_row else overall
        for j, value in enumerate(row):
            shown = value if symmetric else max(0.0, value)
            colour = attention_rgb(shown, scale) if palette == "attention" else relevance_rgb(shown, scale)
            parts.append(f'<rect x="{e(left + cell * j)}" y="{e(y)}" width="{e(cell)}" height="{e(cell)}" '
                         f'fill="{rgb_css(colour)}" stroke="#eee"><title>{row_names[i]} / {column_names[j]}: '
                         f'{e(f"{value:.4g}")}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _cut_note(shown: int, total: int, what: str) -> str:
    if shown >= total:
        return ""
    return (f'<p class="small">{e(what)} shows the first {e(f"{shown:,}")} of the {e(f"{total:,}")} tokens '
            f"({e(f'{total - shown:,}')} left out to keep this file small).</p>")


def short_heading(record: dict, limit: int = MAX_HEADING_CHARACTERS) -> str:
    """A record's short heading: its text (and pair) cut to ``limit`` characters each (not escaped)."""
    text, pair = shorten(record["text"], limit), record.get("pair")
    return text if pair is None else f"{text} || {shorten(pair, limit)}"


def layers_html(report: dict, layer_scores: dict) -> str:
    """Per method, the relevance of every token at every layer (``layer_scores``: method ->
    ``[layers][tokens]``) as an SVG heatmap, rows normalised on their own over the words."""
    out: List[str] = []
    tokens = report["tokens"]
    for method, layers in layer_scores.items():
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
            e(f"{i + 1}: {total:+.3g}") for i, total in enumerate(totals)) + "</p>")
    return "\n".join(out)


def attention_html(layer: int, head: int, tokens: Sequence[str], matrix: Sequence[Sequence[float]]) -> str:
    """One head's attention map (``layer``, ``head`` as shown, from 1) in the attention purple."""
    out = [f"<h3>Attention, layer {e(layer)} head {e(head)}</h3>",
           '<p class="small">Row: the attending token (query); column: the token attended to (key). '
           "Darker purple: more attention.</p>"]
    shown = min(len(tokens), len(matrix), MAX_ATTENTION_TOKENS)
    out.append(_cut_note(shown, len(tokens), "The attention map"))
    cut = [list(row[:shown]) for row in matrix[:shown]]
    out.append(heatmap_svg(cut, tokens[:shown], tokens[:shown], f"attention layer {layer} head {head}",
                           symmetric=False, palette="attention"))
    return "\n".join(out)


def agreement_html(agreement: dict) -> str:
    """The methods' rank agreement (Spearman, -1..1) as a table, each cell coloured (red: agree,
    blue: disagree) with its text colour chosen by the background."""
    methods, matrix = agreement["methods"], agreement["spearman"]
    head = "".join(f"<th>{e(method_title(m))}</th>" for m in methods)
    rows = [f"<tr><th></th>{head}</tr>"]
    for name, values in zip(methods, matrix):
        cells = []
        for value in values:
            if value is None:
                cells.append('<td class="agree">n/a</td>')
            else:
                cells.append(f'<td class="agree" style="{_style(relevance_rgb(value, 1.0))}">{e(f"{value:+.2f}")}</td>')
        rows.append(f"<tr><th>{e(method_title(name))}</th>{''.join(cells)}</tr>")
    return ("<h3>Agreement of the methods (Spearman's rank correlation of the word scores)</h3>"
            f'<table class="agreement">{"".join(rows)}</table>')


def example_html(report: dict, number: Optional[int] = None, heading: Optional[str] = None) -> str:
    """One example of the report (a record of `explain --json`, per-layer scores and attention
    optional): heading (``heading``, else ``Example {number}:`` and the text), prediction, per
    method the word heatmap with its legend and pieces."""
    out: List[str] = []
    if heading is None:
        text, pair = shorten(report["text"], MAX_HEADING_CHARACTERS), report.get("pair")
        shown = text if pair is None else f"{text} || {shorten(pair, MAX_HEADING_CHARACTERS)}"
        heading = shown if number is None else f"Example {number}: {shown}"
    out.append(f"<h2>{e(heading)}</h2>")
    if report.get("dropped_tokens"):
        kept, dropped = len(report["tokens"]), report["dropped_tokens"]
        out.append(f'<p class="small">The text has {e(f"{kept + dropped:,}")} tokens; the model '
                   f'read the first {e(f"{kept:,}")} ({e(f"{dropped:,}")} dropped).</p>')
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
            f"{e(name)} <b>{e(f'{value:+.4f}')}</b>" for name, value in shares.items()) + "</p>")
    for method in report["methods"]:
        entry = report["scores"][method]
        words = word_scores(report, method)
        scale = symmetric_scale(s for _, s in words)
        out.append(f"<h3>{e(method_title(method))}</h3>")
        marked = report["target_word"]["index"] if report.get("target_word") else None
        out.append(f'<div class="text">{_spans(words, scale, "w", marked, _piece_titles(report, method))}</div>')
        out.append(f"<div>{legend(scale)}")
        if method in report.get("conservation", {}):
            ratio = report["conservation"][method]
            out.append(f' <span class="small">conservation {e(f"{ratio:.4f}")}</span>')
        parts = report.get("embedding_shares", {}).get(method)
        if parts and not shares:
            out.append(' <span class="small">embedding parts (summed over the words): ' + ", ".join(
                e(f"{name.replace('_', ' ')} {sum(values):+.4f}") for name, values in parts.items()) + "</span>")
        out.append("</div>")
        tokens = [(t, s) for t, s in zip(report["tokens"], entry["tokens"])]
        token_scale = symmetric_scale(s for _, s in tokens)
        out.append(f"<details><summary>word pieces</summary><div class=\"text\">{_spans(tokens, token_scale, 'p')}"
                   f"</div>{legend(token_scale)}</details>")
    if report.get("layer_scores"):
        out.append(layers_html(report, report["layer_scores"]))
    attention = report.get("attention")
    if attention is not None:
        out.append(attention_html(attention["layer"], attention["head"], report["tokens"], attention["matrix"]))
    return "\n".join(out)


# ------------------------------------------------------------------- notebook
NOTEBOOK_CLASS = "bert-lrp-view"


def scoped_css(css: str, scope: str) -> str:
    """``css`` with every rule applied inside ``scope`` only (``body`` becomes the scope itself), so
    that a view inside a notebook never restyles the notebook around it."""
    rules = []
    for selectors, declarations in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        scoped = [scope if s.strip() == "body" else f"{scope} {s.strip()}" for s in selectors.split(",")]
        rules.append(f"{', '.join(scoped)} {{{declarations}}}")
    return "\n".join(rules)


def notebook_html(views: Sequence[dict]) -> str:
    """Flat records (one per explained label, as :func:`bert_lrp.attribution.records.label_views`
    gives) as one block for a notebook cell: the example blocks of the HTML report and the explorer,
    each headed by its own text (as the explorer heads it), under the report's style scoped to the block."""
    blocks = "\n".join(example_html(view, heading=short_heading(view)) for view in views)
    return (f'<div class="{NOTEBOOK_CLASS}"><style>{scoped_css(CSS, "." + NOTEBOOK_CLASS)}</style>\n'
            f"{blocks}\n</div>")


def show_html(html_text: str) -> None:
    """Display ``html_text`` in the running Jupyter / IPython front end."""
    try:
        from IPython.display import HTML, display
    except ImportError:
        raise RuntimeError("show() displays in Jupyter or IPython, which is not installed; "
                           "_repr_html_() returns the same HTML as a string") from None
    display(HTML(html_text))
