"""A run's progress and cancellation hook: an optional object a caller hands to
:func:`~bert_lrp.attribution.road.explain_texts` / :func:`~bert_lrp.attribution.road.stream_texts`
(``progress=``), carried by the run's :class:`~bert_lrp.attribution.plan.Plan` to every loop that
sends rows through the model.

The hook has one method, ``rows(n)``: called after each chunk of ``n`` forward rows (a chunk of
perturbed coalitions of SHAP, occlusion or LIME; of IG's interpolation steps; of SmoothGrad's noisy
copies) and after each batch of the shared pass (``n``: the texts of the batch). It may raise
:class:`Cancelled` to stop the run there: between two chunks, never inside one. Nothing here is
global: the hook belongs to the one run it was given to.
"""
from __future__ import annotations

from typing import Any, Protocol

from ..errors import BertLrpError


class Cancelled(BertLrpError):
    """A run stopped between two forward chunks because its caller cancelled it (a client that went
    away, a Cancel button, Ctrl-C)."""


class RowHook(Protocol):
    """What a run calls after each chunk of forward rows (see the module docstring)."""

    def rows(self, n: int) -> None:
        ...


def is_hook(progress: Any) -> bool:
    """``progress`` is a hook object (not the command line's True/False for a progress bar)."""
    return not isinstance(progress, bool) and callable(getattr(progress, "rows", None))


class HookBar:
    """A hook seen as the ``update(n)`` / ``close()`` of a tqdm bar, for the loops that drive a bar."""

    def __init__(self, hook: RowHook) -> None:
        self.hook = hook

    def update(self, n: int) -> None:
        self.hook.rows(int(n))

    def close(self) -> None:
        pass


def rows_done(progress: Any, n: int) -> None:
    """Tell ``progress`` (when it is a hook) that ``n`` more rows went through the model."""
    if is_hook(progress):
        progress.rows(int(n))


__all__ = ["Cancelled", "HookBar", "RowHook", "is_hook", "rows_done"]
