"""One explorer run as it goes: its progress and cancellation (:class:`RunProgress`, the hook the
road calls after every forward chunk), the measured speed of this explorer (:class:`Throughput`,
for the plan's seconds) and the one document of a run made of several groups
(:func:`merge_explanations`).
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Sequence

from ...attribution.progress import Cancelled
from ...attribution.records import LabelScores, TextExplanation

PROGRESS_INTERVAL = 0.2  # seconds between two progress events (at most ~5 per second)
Emit = Callable[[Dict[str, Any]], None]


def cancel_check(cancelled: Any) -> Callable[[], bool]:
    """``cancelled`` as a test: a ``threading.Event`` (``is_set``), a callable, or None (never)."""
    if cancelled is None:
        return lambda: False
    if hasattr(cancelled, "is_set"):
        return cancelled.is_set
    if callable(cancelled):
        return cancelled
    raise TypeError(f"cancelled must be a threading.Event or a callable, got {type(cancelled).__name__}")


class RunProgress:
    """The road's hook for one run (:mod:`bert_lrp.attribution.progress`): counts the forward rows
    done of ``total``; raises :class:`~bert_lrp.attribution.progress.Cancelled` at the first chunk
    after ``cancelled`` is set (or :meth:`cancel` was called); ``emit`` gets
    ``{"event": "progress", "rows_done", "rows_total"}`` at most every :data:`PROGRESS_INTERVAL`."""

    def __init__(self, total: int, cancelled: Any = None, emit: Optional[Emit] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.done = int(total), 0
        self._cancelled = cancel_check(cancelled)
        self._stop = threading.Event()
        self._emit, self._clock = emit, clock
        self._last = float("-inf")
        self.seconds = 0.0  # of the last road run (set by its caller)

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set() or bool(self._cancelled())

    def check(self) -> None:
        """Raise Cancelled when the run was cancelled."""
        if self.cancelled:
            raise Cancelled("the run was cancelled")

    def rows(self, n: int) -> None:
        """``n`` more rows went through the model (never counted past ``total``)."""
        self.done = min(self.total, self.done + max(0, int(n)))
        self.check()
        self.report()

    def reach(self, done: int) -> None:
        """At least ``done`` rows are done (the end of a group: its estimate is spent)."""
        self.done = min(self.total, max(self.done, int(done)))
        self.report(force=True)

    def report(self, force: bool = False) -> None:
        if self._emit is None:
            return
        now = self._clock()
        if force or now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self._emit({"event": "progress", "rows_done": self.done, "rows_total": self.total})


class Throughput:
    """Cost units (rows x tokens) per second of this explorer's finished runs; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cost, self._seconds = 0, 0.0

    def record(self, cost: int, seconds: float) -> None:
        if cost > 0 and seconds > 0:
            with self._lock:
                self._cost += cost
                self._seconds += seconds

    def seconds(self, cost: int) -> Optional[float]:
        """Estimated seconds of ``cost`` (None before the first finished run)."""
        with self._lock:
            if self._cost == 0:
                return None
            return round(cost * self._seconds / self._cost, 3)


MERGED = ("scores", "conservation", "shares", "relevance", "layer_scores")


def merge_explanations(parts: Sequence[TextExplanation], methods: Sequence[str]) -> TextExplanation:
    """One text's explanations by groups of ``methods`` -> the explanation of all of them: the
    first part's prediction, logits and target logits (the first group's pass is the pass a run of
    every method makes), every method's fields in run order (the parts' order: a run of every
    method stores the shared-pass methods first, then each other method)."""
    first = parts[0]
    labels: List[LabelScores] = []
    for k, entry in enumerate(first.labels):
        fields: Dict[str, Any] = {}
        for name in MERGED:
            found: Dict[str, Any] = {}
            for part in parts:
                found.update(getattr(part.labels[k], name))
            fields[name] = found  # in run order, as one run of every method stores them
        extras: Dict[str, float] = {}
        for part in parts:
            extras.update(part.labels[k].extras)
        labels.append(LabelScores(target=entry.target, target_logit=entry.target_logit, extras=extras, **fields))
    return replace(first, methods=list(methods), labels=labels)


__all__ = ["RunProgress", "Throughput", "cancel_check", "merge_explanations"]
