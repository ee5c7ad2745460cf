"""How much the methods of one explanation agree: Spearman's rank correlation of their word scores,
every method against every other (the explorer's agreement matrix, its comparison grid's order)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from ...attribution.records import label_views


def _spearman(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Spearman's rank correlation (average ranks for ties); None for fewer than 2 values or no spread."""
    if len(a) < 2:
        return None
    ranks = []
    for values in (a, b):
        order = sorted(range(len(values)), key=lambda i: values[i])
        rank = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                rank[order[k]] = (i + j) / 2
            i = j + 1
        ranks.append(torch.tensor(rank, dtype=torch.float64))
    x, y = ranks[0] - ranks[0].mean(), ranks[1] - ranks[1].mean()
    norm = float(x.norm() * y.norm())
    return None if norm == 0 else round(float((x * y).sum()) / norm, 6)


def agreement(record: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Spearman's rank agreement of the word scores between every two methods of a record
    (the explained label; ``target="all"``: the predicted label)."""
    view = next((v for v in label_views(record) if v.get("target") == record.get("prediction")), None) \
        or label_views(record)[0]
    methods = list(view.get("scores", {}))
    matrix = [[_spearman(view["scores"][a]["words"], view["scores"][b]["words"]) for b in methods] for a in methods]
    return {"methods": methods, "spearman": matrix}


__all__ = ["agreement"]
