"""Self-contained HTML pages (no network, no scripts: a Content-Security-Policy ``<meta>`` forbids
them) for ``bert-lrp inspect``: the masked-word view and the embedding analysis. Charts are inline
SVG; every value written into the HTML (texts, tokens, numbers, colours) goes through the one
escaping component, :func:`bert_lrp.attribution.heatmaps.e`. Reuses the explanation report's CSS,
colours and heatmap (:mod:`bert_lrp.views.html_report`)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from ..attribution.heatmaps import CSS, MAX_ATTENTION_TOKENS, e, heatmap_svg, relevance_rgb, rgb_css, text_rgb
from .html_report import CSP

PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
EXTRA_CSS = """
table.grid { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px 0; }
table.grid td, table.grid th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
table.grid th { background: #f4f4f4; }
.cell { font-family: monospace; unicode-bidi: isolate; }
.charts { display: flex; flex-wrap: wrap; gap: 10px; }
"""


def _page(title: str, body: Sequence[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
            f"<title>{e(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body>\n<h1>{e(title)}</h1>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _prob_cell(token: str, probability: float) -> str:
    background = relevance_rgb(probability, 1.0)
    return (f'<td class="cell" style="background: {rgb_css(background)}; color: {rgb_css(text_rgb(background))}" '
            f'title="{e(f"{probability:.4f}")}">{e(token)} {e(f"{probability:.3f}")}</td>')


# ------------------------------------------------------------------ masked word
def render_mask_html(report: dict, model: Optional[str] = None) -> str:
    """The page for :func:`bert_lrp.inspection.mask.masked_word_view`'s report."""
    body: List[str] = []
    if model:
        body.append(f'<p class="small">model: {e(model)}</p>')
    body.append(f'<p class="text">{e(report["text"])}</p>')
    body.append('<p class="small">Logit lens: the model\'s own masked-LM head (dense, activation, LayerNorm, decoder '
                "tied to the word embeddings) applied to the masked position's hidden state after each layer; "
                "the last row is the model's output. The head was trained on the last layer only, so low "
                "probabilities early on mean \"not yet readable by this head\". Cell colour: probability "
                "(white 0, red 1).</p>")
    tokens = report["tokens"]
    for number, mask in enumerate(report["masks"], 1):
        best = mask["output"][0]["token"]
        body.append(f"<h2>[MASK] {e(number)} (token {e(mask['position'])})</h2>")
        body.append("<h3>Output</h3>")
        for entry in mask["output"]:
            width, probability = max(1, int(round(300 * entry["probability"]))), entry["probability"]
            body.append(f'<div class="prob"><span class="cell" style="width:140px">{e(entry["token"])}</span>'
                        f'<span class="bar" style="width:{e(width)}px"></span>{e(f"{probability:.3f}")}</div>')
        body.append("<h3>Top predictions per layer (logit lens)</h3>")
        rows = [f"<tr><th>layer</th>{''.join(f'<th>{e(k + 1)}</th>' for k in range(report['top_k']))}"
                f"<th>p / rank of {e(best)}</th></tr>"]
        for entry in mask["logit_lens"]:
            name = "embeddings" if entry["layer"] == 0 else f"layer {entry['layer']}"
            cells = "".join(_prob_cell(t["token"], t["probability"]) for t in entry["top"])
            rank = f"{entry['output_top_probability']:.3f} / {entry['output_top_rank']}"
            rows.append(f"<tr><td>{e(name)}</td>{cells}<td>{e(rank)}</td></tr>")
        body.append('<table class="grid">' + "".join(rows) + "</table>")
        body.append("<h3>Attention from the masked position</h3>")
        body.append('<p class="small">Per layer: one row per head (and their mean), one column per token; a cell is the '
                    "probability with which [MASK] attends to that token (each row sums to 1). Hover for values.</p>")
        shown = min(len(tokens), MAX_ATTENTION_TOKENS)
        if shown < len(tokens):
            body.append(f'<p class="small">The maps show the first {e(shown)} of {e(len(tokens))} tokens.</p>')
        table = ['<table class="grid"><tr><th>layer</th><th>top tokens (mean over heads)</th></tr>']
        for entry in mask["attention"]:
            tops = ", ".join(f"{t['token']} {t['weight']:.2f}" for t in entry["mean"]["top"])
            table.append(f"<tr><td>{e(entry['layer'])}</td><td class=\"cell\">{e(tops)}</td></tr>")
        body.append("".join(table) + "</table>")
        for entry in mask["attention"]:
            matrix = [h["row"][:shown] for h in entry["heads"]] + [entry["mean"]["row"][:shown]]
            labels = [f"head {h['head']}" for h in entry["heads"]] + ["mean"]
            body.append(heatmap_svg(matrix, labels, tokens[:shown], f"layer {entry['layer']}: attention from [MASK]",
                                    symmetric=False, per_row=True, palette="attention"))
    return _page("bert-lrp inspect mask", body)


# ------------------------------------------------------------------ embeddings
def line_chart_svg(series: Sequence[Tuple[str, Sequence[Optional[float]], str, str]], x_labels: Sequence[str],
                   title: str, width: int = 560, height: int = 300) -> str:
    """Lines over the x positions: ``series`` of ``(name, values, colour, dash)`` (None = gap)."""
    left, right, top, bottom = 50, 170, 24, 36
    values = [v for _, vs, _, _ in series for v in vs if v is not None]
    low, high = min([0.0] + values), max([1.0] + values)
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(x_labels) - 1)

    def x(i: int) -> float:
        return left + plot_w * i / n

    def y(v: float) -> float:
        return top + plot_h * (high - v) / (high - low)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{e(width)}" height="{e(height)}" role="img" '
           f'aria-label="{e(title)}"><text x="4" y="14" font-size="12">{e(title)}</text>']
    for tick in range(int(low * 10) - (1 if low < 0 else 0), int(high * 10) + 1, 2):
        v = tick / 10
        if low <= v <= high:
            out.append(f'<line x1="{e(left)}" y1="{e(f"{y(v):.1f}")}" x2="{e(left + plot_w)}" '
                       f'y2="{e(f"{y(v):.1f}")}" stroke="#eee"/><text x="{e(left - 6)}" y="{e(f"{y(v) + 4:.1f}")}" '
                       f'font-size="11" text-anchor="end">{e(f"{v:.1f}")}</text>')
    for i, label in enumerate(x_labels):
        out.append(f'<text x="{e(f"{x(i):.1f}")}" y="{e(top + plot_h + 16)}" font-size="11" '
                   f'text-anchor="middle">{e(label)}</text>')
    out.append(f'<text x="{e(f"{left + plot_w / 2:.1f}")}" y="{e(height - 4)}" font-size="11" text-anchor="middle">'
               "layer (0 = embedding output)</text>")
    for number, (name, vs, colour, dash) in enumerate(series):
        points = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline points="{e(path)}" fill="none" stroke="{e(colour)}" stroke-width="2" '
                       f'stroke-dasharray="{e(dash)}"/>')
            for (px, py), v in zip(points, [v for v in vs if v is not None]):
                out.append(f'<circle cx="{e(f"{px:.1f}")}" cy="{e(f"{py:.1f}")}" r="3" fill="{e(colour)}">'
                           f'<title>{e(f"{name}: {v:.4f}")}</title></circle>')
        ly = top + 14 * number + 6
        out.append(f'<line x1="{e(left + plot_w + 10)}" y1="{e(ly)}" x2="{e(left + plot_w + 30)}" y2="{e(ly)}" '
                   f'stroke="{e(colour)}" stroke-width="2" stroke-dasharray="{e(dash)}"/>'
                   f'<text x="{e(left + plot_w + 34)}" y="{e(ly + 4)}" font-size="11">{e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def scatter_svg(points: Sequence[Sequence[float]], colours: Sequence[str], tips: Sequence[str], title: str,
                size: int = 260) -> str:
    """A square scatter plot of 2-D ``points``, one colour and tooltip per point."""
    margin = 16
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span = max([1e-12] + [abs(v) for v in xs + ys])
    inner = size - 2 * margin

    def scale(v: float) -> float:
        return margin + inner * (v + span) / (2 * span)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{e(size)}" height="{e(size + 16)}" role="img" '
           f'aria-label="{e(title)}"><text x="4" y="12" font-size="12">{e(title)}</text>',
           f'<rect x="{e(margin)}" y="{e(margin + 16)}" width="{e(inner)}" height="{e(inner)}" fill="none" '
           'stroke="#ccc"/>']
    for (px, py), colour, tip in zip(points, colours, tips):
        out.append(f'<circle cx="{e(f"{scale(px):.1f}")}" cy="{e(f"{16 + size - scale(py):.1f}")}" r="4" '
                   f'fill="{e(colour)}" fill-opacity="0.75"><title>{e(tip)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def render_embeddings_html(report: dict, model: Optional[str] = None, source: Optional[str] = None) -> str:
    """The page for :func:`bert_lrp.inspection.embeddings.embedding_report`'s report."""
    body: List[str] = []
    if model:
        body.append(f'<p class="small">model: {e(model)}' + (f"; sentences: {e(source)}" if source else "") + "</p>")
    counts = (f"{report['sentences']:,} sentences, {report['corpus_words']:,} words. Anisotropy: mean cosine "
              f"similarity of {report['samples']:,} randomly sampled words (seed {report['seed']}). ")
    body.append(f"<p>{e(counts)}"
                "Self-similarity: mean cosine between a word's occurrences (each pair of contexts); corrected = "
                "self-similarity - anisotropy (Ethayarajh 2019). Words of several word pieces: mean of the "
                "pieces.</p>")
    labels = [str(layer) for layer in report["layers"]]
    colour = {w: PALETTE[i % len(PALETTE)] for i, w in enumerate(report["words"])}
    series = [("anisotropy", report["anisotropy"], "#444", "5,4")]
    for w in report["words"]:
        series.append((f"{w} self-sim.", report["per_word"][w]["self_similarity"], colour[w], ""))
        series.append((f"{w} corrected", report["per_word"][w]["corrected"], colour[w], "2,3"))
    body.append('<div class="charts">' + line_chart_svg(series, labels, "cosine similarity per layer") + "</div>")
    head = "".join(f"<th>{e(w)} (n={e(report['per_word'][w]['occurrences'])}) raw / corrected</th>"
                   for w in report["words"])
    head += "".join(f"<th>{e(p.replace('|', ' vs '))}</th>" for p in report["between"])
    rows = [f"<tr><th>layer</th><th>anisotropy</th>{head}</tr>"]

    def fmt(v: Optional[float]) -> str:
        return "n/a" if v is None else e(f"{v:+.3f}")

    for layer in report["layers"]:
        cells = [f"<td>{e(layer)}</td><td>{fmt(report['anisotropy'][layer])}</td>"]
        for w in report["words"]:
            entry = report["per_word"][w]
            cells.append(f"<td>{fmt(entry['self_similarity'][layer])} / {fmt(entry['corrected'][layer])}</td>")
        cells += [f"<td>{fmt(entry['similarity'][layer])}</td>" for entry in report["between"].values()]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body.append('<table class="grid">' + "".join(rows) + "</table>")
    body.append("<h2>PCA of the target words' embeddings, per layer</h2>")
    body.append('<p class="small">Each point is one occurrence (hover for its context); axes: the first two principal '
                "components of that layer's occurrences (numpy SVD of the centred vectors), explained variance in "
                "the title. Legend: " + ", ".join(f'<span style="color:{e(colour[w])}">&#9679; {e(w)}</span>'
                                                  for w in report["words"]) + "</p>")
    colours = [colour[o["word"]] for o in report["occurrences"]]
    tips = [f"{o['as_written']} (sentence {o['sentence']}): {o['context']}" for o in report["occurrences"]]
    charts = []
    for entry in report["pca"]:
        ratio = entry["explained_variance"]
        charts.append(scatter_svg(entry["points"], colours, tips,
                                  f"layer {entry['layer']} (PC1 {100 * ratio[0]:.0f} %, PC2 {100 * ratio[1]:.0f} %)"))
    body.append('<div class="charts">' + "".join(charts) + "</div>")
    body.append("<h2>Occurrences</h2><ol>" + "".join(
        f'<li><span style="color:{e(colour[o["word"]])}">&#9679;</span> sentence {e(o["sentence"])}: '
        f'{e(o["context"])}</li>'
        for o in report["occurrences"]) + "</ol>")
    return _page("bert-lrp inspect embeddings", body)
