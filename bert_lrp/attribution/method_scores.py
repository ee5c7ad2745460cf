"""Per-method results, declared once: which fields an explanation holds per method, and the
operations every road applies to them (one label of ``target="all"``, stacking labels, merging
separate passes, one text's row, merging a long text's windows).

A field is a mapping ``method -> value`` (or ``"<method>.<name>" -> value`` for extras), a value
being a tensor, a list of tensors (per layer) or a dict of tensors (per embedding part). On an
:class:`~bert_lrp.attribution.explain.Explanation` tensors start with the batch axis
(``[batch, ...]``; with ``target="all"`` a label axis follows: ``[batch, labels, ...]``); on a
:class:`~bert_lrp.attribution.records.LabelScores` they are one text's (``[seq, ...]``, or a
float per text). A new per-method field is one :class:`Field` in :data:`FIELDS` (and the
attribute of that name on both records); every operation below then carries it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

Tree = Any  # a tensor, a list of trees or a dict of trees


@dataclass(frozen=True)
class Field:
    """One per-method field. ``name``: the Explanation attribute; ``kept_as``: the LabelScores
    attribute (None: not kept per text); ``per_token``: its tensors have a sequence axis after
    the batch axis (merged over windows by position), else one value per text (merged by the
    mean); ``row``: one text's value ``(tensor [batch, ...], row b, length) -> value``;
    ``optional``: kept per text only when asked (``relevance``: hidden relevance,
    ``layer_scores``: layers)."""

    name: str
    kept_as: Optional[str]
    per_token: bool
    row: Callable[[torch.Tensor, int, int], Any]
    optional: bool = False


def _tokens(tensor: torch.Tensor, b: int, length: int) -> torch.Tensor:
    return tensor[b, :length].detach().float()


def _token_sums(tensor: torch.Tensor, b: int, length: int) -> torch.Tensor:
    """A ``[batch, seq, hidden]`` share -> one text's ``[seq]`` (hidden units summed)."""
    return tensor[b, :length].sum(-1).detach().float()


def _number(tensor: torch.Tensor, b: int, length: int) -> float:
    return float(tensor[b])


FIELDS = (
    Field("scores", "scores", True, _tokens),                       # [batch, seq]
    Field("relevance", "relevance", True, _tokens, optional=True),  # [batch, seq, hidden]
    Field("embedding_shares", "shares", True, _token_sums),         # per part [batch, seq, hidden]
    Field("conservation", "conservation", False, _number),          # [batch]
    Field("layer_scores", "layer_scores", True, _tokens, optional=True),  # per layer [batch, seq]
    Field("head_scores", None, True, _tokens),                      # per layer [batch, heads, seq]
    Field("extras", "extras", False, _number),                      # "<method>.<name>": [batch]
)
EXPLANATION_FIELDS = tuple(f.name for f in FIELDS)


def map_tree(tree: Tree, function: Callable[[torch.Tensor], Any]) -> Tree:
    """``function`` applied to every tensor of ``tree``, the structure kept."""
    if isinstance(tree, dict):
        return {key: map_tree(value, function) for key, value in tree.items()}
    if isinstance(tree, list):
        return [map_tree(value, function) for value in tree]
    return function(tree)


def zip_tree(trees: Sequence[Tree], function: Callable[[List[Any]], Any]) -> Tree:
    """Trees of the same structure -> one, ``function`` combining the tensors at each place."""
    first = trees[0]
    if isinstance(first, dict):
        return {key: zip_tree([tree[key] for tree in trees], function) for key in first}
    if isinstance(first, list):
        return [zip_tree([tree[i] for tree in trees], function) for i in range(len(first))]
    return function(list(trees))


def fields_of(record: Any, names: Sequence[str] = EXPLANATION_FIELDS) -> Dict[str, Dict[str, Tree]]:
    """``{field: {method: value}}`` of an Explanation (or, with LabelScores names, a LabelScores)."""
    return {name: getattr(record, name) for name in names}


def for_label(record: Any, label: int) -> Dict[str, Dict[str, Tree]]:
    """The fields of an Explanation with a label axis, at ``label`` (the axis removed)."""
    return {name: map_tree(values, lambda t: t[:, label]) for name, values in fields_of(record).items()}


def stack_labels(records: Sequence[Any]) -> Dict[str, Dict[str, Tree]]:
    """The fields of one Explanation per label -> with a label axis after the batch axis (the
    fields of the first record: every label has the same methods)."""
    return {name: zip_tree([getattr(r, name) for r in records], lambda ts: torch.stack(ts, 1))
            for name in EXPLANATION_FIELDS}


def merge_passes(records: Sequence[Any]) -> Dict[str, Dict[str, Tree]]:
    """The fields of Explanations of the same inputs by separate passes, side by side (each pass
    holds other methods)."""
    merged: Dict[str, Dict[str, Tree]] = {name: {} for name in EXPLANATION_FIELDS}
    for record in records:
        for name in EXPLANATION_FIELDS:
            merged[name].update(getattr(record, name))
    return merged


def text_row(record: Any, b: int, length: int, hidden_relevance: bool = False, layers: bool = False
             ) -> Dict[str, Dict[str, Tree]]:
    """Row ``b`` of an Explanation (one label), cut to ``length`` tokens, as LabelScores fields
    (``relevance`` only with ``hidden_relevance``, ``layer_scores`` only with ``layers``; extras
    with more than one value per text are not kept)."""
    wanted = {"relevance": hidden_relevance, "layer_scores": layers}
    out: Dict[str, Dict[str, Tree]] = {}
    for spec in FIELDS:
        if spec.kept_as is None:
            continue
        values = getattr(record, spec.name)
        if spec.optional and not wanted.get(spec.name, False):
            values = {}
        if spec.name == "extras":
            values = {k: v for k, v in values.items() if v.dim() == 1}
        out[spec.kept_as] = map_tree(values, lambda t, spec=spec: spec.row(t, b, length))
    return out


def merge_windows(entries: Sequence[Any], positions: Sequence[Sequence[int]], length: int
                  ) -> Dict[str, Dict[str, Tree]]:
    """LabelScores fields of one label in every window -> the whole text's: a position's value is
    the mean over the windows that hold it; per-text values (conservation, extras) are the mean
    over the windows. ``positions``: each window's piece positions in the whole text."""
    counts = torch.zeros(length)
    for p in positions:
        counts[p] += 1

    def by_position(values: List[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros((length, *values[0].shape[1:]), dtype=values[0].dtype)
        for value, p in zip(values, positions):
            total[p] += value
        return total / counts.view(-1, *([1] * (total.dim() - 1))).to(total.dtype)

    def mean(values: List[Any]) -> Any:
        return sum(values) / len(values)

    out: Dict[str, Dict[str, Tree]] = {}
    for spec in FIELDS:
        if spec.kept_as is None:
            continue
        trees = [getattr(entry, spec.kept_as) for entry in entries]
        out[spec.kept_as] = zip_tree(trees, by_position if spec.per_token else mean)
    return out
