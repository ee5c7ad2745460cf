"""Integrated Gradients at the embedding output (a reference method; it costs ``steps`` passes).

Equivalent to captum's ``LayerIntegratedGradients`` on ``model.bert.embeddings`` (any family: the
encoder's ``embed``, see ``BertModel.embed``): the embedding
output is interpolated between the baseline's and the input's, the gradients along the path are
integrated by quadrature, and the result is multiplied by (input - baseline).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .progress import rows_done
from .registry import Method, MethodContext, MethodResult, Option, register
from .targets import logits_of, select

QUADRATURES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(steps: int, method: str = "gausslegendre") -> Tuple[torch.Tensor, torch.Tensor]:
    """Points ``alpha`` in [0, 1] and weights for integrating over the straight path (as captum)."""
    if steps < 1:
        raise ValueError(f"integrated gradients needs at least 1 step, got {steps}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.tensor(0.5 * (nodes + 1)), torch.tensor(0.5 * weights)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("the trapezoid rule needs at least 2 steps")
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return torch.linspace(0, 1, steps, dtype=torch.float64), torch.tensor(weights)
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if method not in offsets:
        raise ValueError(f"unknown quadrature {method!r}; choose from {', '.join(QUADRATURES)}")
    alphas = (torch.arange(steps, dtype=torch.float64) + offsets[method]) / steps
    return alphas, torch.full((steps,), 1.0 / steps, dtype=torch.float64)


def baseline_ids(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, kind: str) -> torch.Tensor:
    """The input with every non-special token replaced by [PAD] or [MASK] ([CLS], [SEP] kept)."""
    config = model.config
    replacement = {"pad": config.pad_token_id, "mask": int(config.extra.get("mask_token_id", 103))}[kind]
    last = attention_mask.sum(1).clamp_min(1) - 1
    separator = input_ids.gather(1, last.unsqueeze(1))  # [SEP] closes every sequence
    special = (input_ids == input_ids[:, :1]) | (input_ids == separator) | (attention_mask == 0)
    special[:, 0] = True
    return torch.where(special, input_ids, torch.full_like(input_ids, replacement))


def _target_scores(model, embedded, mask, labels, positions) -> torch.Tensor:
    return select(logits_of(model(attention_mask=mask, embedding_output=embedded)), labels, positions)


def integrated_gradients(model: nn.Module, inputs: Dict[str, torch.Tensor], labels: torch.Tensor,
                         positions: Optional[torch.Tensor], steps: int = 50, baseline: str = "pad",
                         internal_batch_size: int = 64, method: str = "gausslegendre", progress=None
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Returns the attribution ``[batch, seq, hidden]`` at the embedding output and the
    completeness gap ``[batch]``: sum of attributions - (f(input) - f(baseline)).

    At most ``internal_batch_size`` interpolated rows go through the model at once, so memory is
    bounded whatever the number of steps. ``progress``: a run's hook
    (:mod:`bert_lrp.attribution.progress`), told of each chunk's rows.
    """
    if baseline not in ("pad", "mask", "zeros"):
        raise ValueError(f"unknown baseline {baseline!r}; choose pad, mask or zeros")
    if internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
    embeddings = model.base_model.embed
    with torch.no_grad():
        start = embeddings(ids, types)
        if baseline == "zeros":
            origin = torch.zeros_like(start)
        else:
            origin = embeddings(baseline_ids(model, ids, mask, baseline), types)
    alphas, weights = quadrature(steps, method)
    alphas, weights = alphas.to(start.dtype), weights.to(start.dtype)
    batch = ids.shape[0]
    delta = start - origin
    integral = torch.zeros_like(start)
    # rows are (example, step) pairs, processed in chunks of at most internal_batch_size
    pairs = [(b, k) for b in range(batch) for k in range(steps)]
    for first in range(0, len(pairs), internal_batch_size):
        chunk = pairs[first:first + internal_batch_size]
        examples = torch.tensor([b for b, _ in chunk])
        step_alphas = alphas[[k for _, k in chunk]].view(-1, 1, 1)
        path = (origin[examples] + step_alphas * delta[examples]).requires_grad_(True)
        scores = _target_scores(model, path, mask[examples], labels[examples],
                                None if positions is None else positions[examples])
        (gradient,) = torch.autograd.grad(scores.sum(), path)
        weighted = gradient * weights[[k for _, k in chunk]].view(-1, 1, 1)
        integral.index_add_(0, examples, weighted)
        rows_done(progress, len(chunk))
    attribution = delta * integral * mask.unsqueeze(-1).to(start.dtype)
    with torch.no_grad():
        both = _target_scores(model, torch.cat([start, origin]), torch.cat([mask, mask]),
                              torch.cat([labels, labels]), None if positions is None else torch.cat([positions, positions]))
    gap = attribution.sum((1, 2)) - (both[:batch] - both[batch:])
    return attribution.detach(), gap.detach()


STEPS = Option("ig_steps", int, 50, "integrated gradients: interpolation steps", minimum=1,
               maximum=10_000)  # a forward + backward row each; Gauss-Legendre converges in tens
BASELINE = Option("ig_baseline", str, "pad", "integrated gradients: baseline input (pad, mask: the text's words "
                  "replaced; zeros: a zero embedding output)", choices=("pad", "mask", "zeros"))
BATCH = Option("ig_batch", int, 64, "integrated gradients: interpolated rows per forward pass (bounds memory)",
               minimum=1, maximum=4_096)  # rows held with their activations for one backward
QUADRATURE = Option("ig_method", str, "gausslegendre", "integrated gradients: quadrature", choices=QUADRATURES)


def _run(context: MethodContext) -> MethodResult:
    options = context.options
    relevance, gap = integrated_gradients(
        context.model, context.inputs, context.target, context.target_position, steps=options["ig_steps"],
        baseline=options["ig_baseline"], internal_batch_size=options["ig_batch"], method=options["ig_method"],
        progress=context.progress)
    return MethodResult(relevance.sum(-1), relevance, {"completeness_gap": gap})


register(Method("integrated_gradients", "IG", aliases=("ig",), reduction="sum", passes="steps (default 50)",
                options=(STEPS, BASELINE, BATCH, QUADRATURE), run=_run, rows=lambda options, words: options["ig_steps"] + 2,
                color="#ff7f0e", summary="Integrated Gradients at the embedding output (Sundararajan et al. 2017)"))
