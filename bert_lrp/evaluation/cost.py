"""What an explanation costs: rows through the model forward and backward, and wall time.

A *pass* is one input row through the whole encoder (forward) or one row of gradient back
through it (backward): GS costs 1 + 1 per explanation, IG with 20 steps 22 + 20, KernelSHAP with
2048 samples 2050 + 0. Counted with hooks on the last encoder layer, so every method is counted
the same way whatever its code path.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Dict, Iterator

import torch


@dataclass
class Cost:
    """Totals over the explanations measured (divide by ``explanations`` for per-explanation costs)."""

    explanations: int = 0
    forward_rows: int = 0
    backward_rows: int = 0
    seconds: float = 0.0

    def per_explanation(self) -> Dict[str, float]:
        n = max(self.explanations, 1)
        return {"explanations": self.explanations, "forward_passes": self.forward_rows / n,
                "backward_passes": self.backward_rows / n, "ms": 1000.0 * self.seconds / n}


@contextlib.contextmanager
def measured(model: torch.nn.Module, cost: Cost, explanations: int) -> Iterator[Cost]:
    """Add the passes and the wall time of the block (explaining ``explanations`` inputs) to ``cost``."""
    layer = model.base_model.encoder_layers()[-1]  # any family (models/bert.py accessors)

    def count_backward(gradient: torch.Tensor) -> None:
        cost.backward_rows += gradient.shape[0]

    def count_forward(module, inputs, output) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        cost.forward_rows += hidden.shape[0]
        if hidden.requires_grad:
            hidden.register_hook(count_backward)

    handle = layer.register_forward_hook(count_forward)
    started = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds += time.perf_counter() - started
        cost.explanations += explanations
        handle.remove()
