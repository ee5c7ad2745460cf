"""One self-contained HTML file for explanations: no network, no external scripts, fonts or CSS,
and a Content-Security-Policy ``<meta>`` that forbids every script (a report opened from disk
runs none, whatever its records hold).

Per example: prediction and probabilities; per method the sentence with word backgrounds scaled
to relevance (normalised per method, symmetric around 0) and a legend; the word pieces on hover
and on demand (``<details>``); a per-layer relevance heatmap (inline SVG); the attention map of
one layer and head (inline SVG, in the attention purple); the methods' agreement. The example
blocks are the records' component (:mod:`bert_lrp.attribution.heatmaps`, shared with the explorer
and the notebook display), which escapes every value it writes and keeps long texts bounded.

The explorer's "Save as HTML report" sends, per example, what its page shows next to the record
(``views``: per-layer relevance, the agreement matrix, the attention head shown); they are checked
here (:func:`checked_view`) and drawn under the example.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from ..attribution.heatmaps import CSS, agreement_html, attention_html, e, example_html, layers_html, short_heading
from ..attribution.records import label_views

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
VIEW_FIELDS = {"layers", "agreement", "attention"}


def render_html(reports: Sequence[dict], title: str = "bert-lrp explanations", model: Optional[str] = None,
                views: Optional[Sequence[Optional[dict]]] = None) -> str:
    """The report of ``reports`` (records of ``explain --json``; flat per-label views or whole
    records, ``target="all"`` drawn per label). ``views``: per report, what the explorer showed
    next to it (see the module docstring) or None; a malformed view is a ``ValueError`` naming it."""
    body = [f"<h1>{e(title)}</h1>"]
    if model:
        body.append(f'<p class="small">model: {e(model)}</p>')
    body.append('<p class="small">Red: relevance for the explained label; blue: against it. Colours are normalised '
                "per method, symmetric around 0. Hover a word for its score. Attention: purple.</p>")
    for number, report in enumerate(reports, 1):
        heading = f"Example {number}: {short_heading(report)}"
        body += [example_html(view, heading=heading) for view in label_views(report)]
        if views is not None and views[number - 1] is not None:
            body.append(view_html(report, checked_view(views[number - 1], report, f"views[{number - 1}]")))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def view_html(report: dict, view: Dict[str, Any]) -> str:
    """The per-layer relevance, the attention head and the agreement the explorer showed."""
    out: List[str] = []
    if view.get("layers") and not report.get("layer_scores"):
        out.append(layers_html(report, view["layers"]))
    attention = view.get("attention")
    if attention is not None:
        out.append(attention_html(attention["layer"] + 1, attention["head"] + 1, attention["tokens"],
                                  attention["attention"]))
    if view.get("agreement") is not None:
        out.append(agreement_html(view["agreement"]))
    return "\n".join(out)


def checked_view(view: Any, report: dict, where: str) -> Dict[str, Any]:
    """``view`` if it is a well-formed view of ``report`` (unknown fields dropped), else ValueError."""
    if not isinstance(view, dict):
        raise ValueError(f"{where}: must be an object or null")
    view = {k: v for k, v in view.items() if k in VIEW_FIELDS}
    tokens = len(report["tokens"])
    layers = view.get("layers")
    if layers is not None:
        _object(layers, f"{where}.layers")
        for method, rows in layers.items():
            if method not in report["methods"]:
                raise ValueError(f"{where}.layers: {str(method)[:40]!r} is not a method of the example")
            for i, row in enumerate(_list(rows, f"{where}.layers.{method}")):
                _numbers(row, f"{where}.layers.{method}[{i}]", tokens)
    agreement = view.get("agreement")
    if agreement is not None:
        _object(agreement, f"{where}.agreement")
        methods = _list(agreement.get("methods"), f"{where}.agreement.methods")
        for i, name in enumerate(methods):
            if not isinstance(name, str):
                raise ValueError(f"{where}.agreement.methods[{i}]: must be a string")
        matrix = _list(agreement.get("spearman"), f"{where}.agreement.spearman")
        if len(matrix) != len(methods):
            raise ValueError(f"{where}.agreement.spearman: one row per method expected")
        for i, row in enumerate(matrix):
            _numbers(row, f"{where}.agreement.spearman[{i}]", len(methods), nullable=True)
        view["agreement"] = {"methods": methods, "spearman": matrix}
    attention = view.get("attention")
    if attention is not None:
        _object(attention, f"{where}.attention")
        for name in ("layer", "head"):
            value = attention.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10_000:
                raise ValueError(f"{where}.attention.{name}: must be a whole number from 0")
        shown = _list(attention.get("tokens"), f"{where}.attention.tokens")
        if not all(isinstance(t, str) for t in shown):
            raise ValueError(f"{where}.attention.tokens: must be strings")
        matrix = _list(attention.get("attention"), f"{where}.attention.attention")
        if len(matrix) != len(shown):
            raise ValueError(f"{where}.attention.attention: one row per token expected")
        for i, row in enumerate(matrix):
            _numbers(row, f"{where}.attention.attention[{i}]", len(shown))
        view["attention"] = {"layer": attention["layer"], "head": attention["head"], "tokens": shown,
                             "attention": matrix}
    return view


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be an object")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{where}: must be a list")
    return value


def _numbers(values: Any, where: str, length: int, nullable: bool = False) -> None:
    _list(values, where)
    if len(values) != length:
        raise ValueError(f"{where}: holds {len(values)} values, expected {length}")
    for value in values:
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: must hold finite numbers")
