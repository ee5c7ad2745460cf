"""The attention the explorer sends: one head at a time (``/api/attention``) and every head as a
small pooled thumbnail (``/api/attention/overview``, bertviz's model view), both bounded in size.

``attentions``: a tensor ``[layers, heads, n, n]`` of one text (rows: the attending token, the
query; columns: the token attended to, the key). Layers and heads count from 0.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch

MAX_THUMBNAIL = 24     # rows and columns of a thumbnail: 12 x 12 heads of 24 x 24 values is ~0.5 MB of JSON
HEAD_DECIMALS = 5
THUMBNAIL_DECIMALS = 3


def one_head(tokens: Sequence[str], attentions: torch.Tensor, layer: int, head: int) -> Dict[str, Any]:
    """The answer of ``/api/attention``: the tokens and one head's ``[n, n]`` matrix."""
    layers, heads = int(attentions.shape[0]), int(attentions.shape[1])
    matrix = attentions[layer, head]
    return {"tokens": list(tokens), "layers": layers, "heads": heads, "layer": layer, "head": head,
            "attention": [[round(float(v), HEAD_DECIMALS) for v in row] for row in matrix.tolist()]}


def spans(n: int, size: int) -> List[Tuple[int, int]]:
    """``size`` consecutive spans ``[start, end)`` covering ``0..n`` as evenly as possible."""
    bounds = [round(i * n / size) for i in range(size + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(size)]


def span_label(tokens: Sequence[str], start: int, end: int) -> str:
    """A thumbnail row's label: its token, or ``first…last`` of the span it pools."""
    return tokens[start] if end - start == 1 else f"{tokens[start]}…{tokens[end - 1]}"


def overview(tokens: Sequence[str], attentions: torch.Tensor, limit: int = MAX_THUMBNAIL) -> Dict[str, Any]:
    """The answer of ``/api/attention/overview``: per layer and head an ``[size, size]`` thumbnail,
    ``size = min(n, limit)``. Longer texts are pooled over consecutive token spans: a row is the
    mean of its span's query rows, a column the sum of its span's key columns (each row still sums
    to 1); ``labels`` name the spans."""
    n = len(tokens)
    size = min(n, limit)
    parts = spans(n, size)
    rows = torch.zeros(size, n, dtype=attentions.dtype)
    columns = torch.zeros(n, size, dtype=attentions.dtype)
    for i, (start, end) in enumerate(parts):
        rows[i, start:end] = 1.0 / (end - start)
        columns[start:end, i] = 1.0
    pooled = rows @ attentions @ columns  # [layers, heads, size, size]
    return {"tokens": list(tokens), "layers": int(attentions.shape[0]), "heads": int(attentions.shape[1]),
            "size": size, "labels": [span_label(tokens, s, e) for s, e in parts],
            "thumbnails": [[[[round(float(v), THUMBNAIL_DECIMALS) for v in row] for row in head] for head in layer]
                           for layer in pooled.tolist()]}


__all__ = ["MAX_THUMBNAIL", "one_head", "overview", "spans"]
