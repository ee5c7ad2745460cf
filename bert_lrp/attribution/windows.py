"""Long documents: explained in overlapping windows, scores merged back onto the whole text.

A text of ``n`` word pieces (plus [CLS] and [SEP]) longer than the model's positions is cut into
windows of ``window`` pieces (default: the model's maximum minus the two special tokens) that
start every ``stride`` pieces (default: half a window, so every piece is seen by at least one
window and most by two). Each window is classified as ``[CLS] piece ... piece [SEP]``.

- The document's logits are the mean of the windows' logits; the explained label is their
  argmax unless a target is given; every window is explained for that same label.
- A piece's score is the mean of its scores over the windows that contain it; [CLS] and [SEP]
  get the mean of the windows' [CLS] and [SEP] scores. Word scores merge pieces as usual.
- A text that fits in one window is explained exactly as :func:`~bert_lrp.explain` would.

Sequence classifiers only (a token classifier's long text is cut by the tokenizer, with a
warning from the command line).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .explain import explain


@dataclass
class WindowedExplanation:
    """One long text: ``scores[method]`` ``[seq]`` over the whole text's pieces."""

    encoding: dict                     # the whole text's Encoding (one row, no truncation)
    methods: List[str]
    scores: Dict[str, torch.Tensor]
    logits: torch.Tensor               # [labels], mean over windows
    target: int
    target_logit: float                # mean over windows
    windows: List[Tuple[int, int]]     # piece spans [start, end) of the whole text, [CLS] = 0
    conservation: Dict[str, float] = field(default_factory=dict)

    def word_scores(self, method: str) -> List[dict]:
        from .registry import get
        from .words import merge_word_pieces

        return merge_word_pieces(self.scores[get(method).name], self.encoding, 0)


def window_spans(length: int, window: int, stride: int) -> List[Tuple[int, int]]:
    """Spans ``[start, end)`` over ``length`` content pieces: every ``stride``, the last one
    aligned to the end so that every piece is covered."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window, stride)) + [length - window]
    return [(start, start + window) for start in dict.fromkeys(starts)]


def explain_windows(model, tokenizer, text: str, methods: Sequence[str] = ("lrp",), target=None,
                    stride: Optional[int] = None, window: Optional[int] = None, batch_size: int = 8,
                    **explain_options) -> WindowedExplanation:
    """Explain ``text`` whatever its length (see the module docstring); ``explain_options`` go to
    :func:`~bert_lrp.explain` (``rule``, ``reduction``, ``ig_steps``, ...)."""
    limit = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    window = window or limit - 2
    if not 1 <= window <= limit - 2:
        raise ValueError(f"window must be in 1..{limit - 2} pieces (the model reads {limit} with [CLS] and [SEP])")
    stride = stride or max(1, window // 2)
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be in 1..{window} (the window), got {stride}")
    whole = tokenizer([text], truncation=False, max_length=10 ** 9)
    ids = whole["input_ids"][0]
    content = ids[1:-1]
    spans = window_spans(len(content), window, stride)
    rows = [torch.cat([ids[:1], content[start:end], ids[-1:]]) for start, end in spans]
    length = max(len(r) for r in rows)
    pad = model.config.pad_token_id
    input_ids = torch.stack([torch.cat([r, r.new_full((length - len(r),), pad)]) for r in rows])
    mask = torch.stack([torch.cat([torch.ones(len(r)), torch.zeros(length - len(r))]) for r in rows]).long()
    batch = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids)}

    with torch.no_grad():
        window_logits = torch.cat([model(**{k: v[i:i + batch_size] for k, v in batch.items()}).logits
                                   for i in range(0, len(rows), batch_size)])
    logits = window_logits.mean(0)
    label = int(logits.argmax()) if target is None else _label_id(model, target)

    totals: Dict[str, torch.Tensor] = {}
    counts = torch.zeros(len(ids))
    target_logits, conservation = [], {}
    for first in range(0, len(rows), batch_size):
        part = {k: v[first:first + batch_size] for k, v in batch.items()}
        result = explain(model, part, methods, target=label, **explain_options)
        target_logits.append(result.target_logit)
        for name, ratio in result.conservation.items():
            conservation.setdefault(name, []).append(ratio)
        for row, (start, end) in enumerate(spans[first:first + batch_size]):
            width = end - start
            positions = [0, *range(start + 1, end + 1), len(ids) - 1]  # [CLS], the window's pieces, [SEP]
            for name, scores in result.scores.items():
                totals.setdefault(name, torch.zeros(len(ids)))[positions] += scores[row, :width + 2].float()
            counts[positions] += 1
    scores = {name: total / counts for name, total in totals.items()}
    return WindowedExplanation(
        encoding=whole, methods=list(scores), scores=scores, logits=logits, target=label,
        target_logit=float(torch.cat(target_logits).mean()), windows=[(s + 1, e + 1) for s, e in spans],
        conservation={name: float(torch.cat(values).mean()) for name, values in conservation.items()})


def _label_id(model, target) -> int:
    labels = model.config.label2id
    if isinstance(target, str):
        if target not in labels:
            raise ValueError(f"unknown target label {target!r}; the model's labels are {sorted(labels)}")
        return labels[target]
    value = int(target)
    if not 0 <= value < model.config.num_labels:
        raise ValueError(f"target class {value} is outside [0, {model.config.num_labels})")
    return value
