"""One self-contained HTML file for explanations: no network, no external scripts, fonts or CSS.

Per example: prediction and probabilities; per method the sentence with word backgrounds scaled
to relevance (normalised per method, symmetric around 0) and a legend; the word pieces on hover
and on demand (``<details>``); a per-layer relevance heatmap (inline SVG); the attention map of
one layer and head (inline SVG). The example blocks are the records' component
(:mod:`bert_lrp.attribution.heatmaps`, shared with the explorer and the notebook display), which
escapes every piece of text from the input and keeps long texts bounded.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..attribution.heatmaps import CSS, e, example_html


def render_html(reports: Sequence[dict], title: str = "bert-lrp explanations", model: Optional[str] = None) -> str:
    body = [f"<h1>{e(title)}</h1>"]
    if model:
        body.append(f'<p class="small">model: {e(model)}</p>')
    body.append('<p class="small">Red: relevance for the explained label; blue: against it. Colours are normalised '
                "per method, symmetric around 0. Hover a word for its score.</p>")
    body += [example_html(report, i + 1) for i, report in enumerate(reports)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
