"""Long texts: where the overlapping windows lie (the road, :mod:`bert_lrp.attribution.road`,
explains them and merges the scores back onto the whole text).

A text whose pieces (with the special tokens and the second text of a pair) exceed the model's
positions is cut into windows over its *first* text: ``window`` pieces (default: what the frame
of special tokens and second text leaves of the model's positions) starting every ``stride``
pieces (default: half a window), the last one aligned to the end, so every piece is in at least
one window and most in two. Each window is the frame around its pieces: ``[CLS] pieces [SEP]``,
or ``[CLS] pieces [SEP] pair [SEP]`` (RoBERTa: ``<s> pieces </s></s> pair </s>``).

- The text's logits are the mean of the windows' logits; the explained label is their argmax
  unless a target is given; every window is explained for that same label.
- A position's score is the mean of its scores over the windows that contain it (the frame's
  positions are in every window). Word ids are the whole text's, so the word-level methods
  (occlusion, SHAP, LIME) see the same words in every window.
- A text that fits in one window is explained exactly as :func:`~bert_lrp.explain` would
  (:func:`bert_lrp.attribution.road.explain_windows` explains one text this way).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from ..errors import RequestError, UsageError


def window_spans(length: int, window: int, stride: int) -> List[Tuple[int, int]]:
    """Spans ``[start, end)`` over ``length`` content pieces: every ``stride``, the last one
    aligned to the end so that every piece is covered."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window, stride)) + [length - window]
    return [(start, start + window) for start in dict.fromkeys(starts)]


def window_positions(sequence_ids: Sequence[Optional[int]], limit: int, window: Optional[int] = None,
                     stride: Optional[int] = None) -> Tuple[List[Tuple[int, int]], List[List[int]]]:
    """Windows over the first text of one encoded row (its ``sequence_ids``: 0 for the first
    text, 1 for the second, None for special tokens) for a model reading ``limit`` positions.

    Returns the spans ``[start, end)`` of the first text's pieces each window holds (positions in
    the row) and, per window, every position of the row it reads (frame included, in order)."""
    content = [p for p, s in enumerate(sequence_ids) if s == 0]
    if not content:
        raise UsageError("the text has no pieces to put in windows")
    before = list(range(0, content[0]))
    after = list(range(content[-1] + 1, len(sequence_ids)))
    room = limit - len(before) - len(after)
    if room < 1:
        raise UsageError(f"the second text leaves no room for the first in the model's {limit} positions")
    window = min(window or room, room)
    stride = stride or max(1, window // 2)
    if stride > window:
        raise RequestError("stride", f"{stride} is larger than the window ({window} pieces): pieces between "
                           "windows would never be explained")
    spans = window_spans(len(content), window, stride)
    positions = [before + content[start:end] + after for start, end in spans]
    return [(content[start], content[end - 1] + 1) for start, end in spans], positions
