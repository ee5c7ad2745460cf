"""SmoothGrad (Smilkov et al. 2017) over GS and GI at the embedding output.

The embedding output x ``[seq, hidden]`` of each example gets Gaussian noise eps,
``smoothgrad_samples`` noisy copies (default 25). Its standard deviation is

    sigma = smoothgrad_sigma * std(x)        (default smoothgrad_sigma = DEFAULT_SIGMA)

where ``std(x)`` is the standard deviation (population, divisor n) of the example's
``real_length x hidden`` embedding-output values over its real tokens (attention mask 1): one
scale per example, the same for every hidden unit, as in the paper. The default was chosen by
measurement (``scripts/smoothgrad_noise_scale.py``, ``docs/smoothgrad.md``): few noisy copies
change the prediction, two seeds give nearly the same map, and the noise still changes the map.
``smoothgrad`` averages the gradients d target logit / d x at x + eps (token score: L2 norm, as
GS); ``smoothgrad_x_input`` averages (x + eps) * gradient (token score: sum, as GI). With
smoothgrad_sigma 0 they are GS and GI.

The noise is drawn per real token only: ``[samples, real_length, hidden]`` standard normal draws
from a generator seeded by the seed and the example's real token ids, placed at the real token
positions (wherever they are in the row); padding gets none. So an example's noise, and its
scores, are the same alone, in any batch, at any position in the batch and with any padding (up
to float rounding of the model's forward pass on differently shaped batches). The (example,
sample) rows go through the model stacked, at most ``rows_per_forward`` rows per forward +
backward pass (default 64).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from ..errors import UsageError
from .perturbation import ROWS_PER_FORWARD, SEED, _progress, example_generator
from .registry import Method, MethodContext, MethodResult, Option, register
from .targets import logits_of, select

DEFAULT_SAMPLES = 25
DEFAULT_SIGMA = 0.5


def noise_scale(embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[batch]`` float64: per example, the standard deviation (population, divisor n) of its
    embedding-output values ``embedded[b]`` ``[seq, hidden]`` at its real tokens (``mask[b]`` ``[seq]``
    is 1), i.e. over ``real_length x hidden`` numbers; 0 for an example without real tokens. The
    noise's standard deviation is ``smoothgrad_sigma`` times this."""
    scales = torch.zeros(embedded.shape[0], dtype=torch.float64)
    for b in range(embedded.shape[0]):
        real = embedded[b][mask[b].bool()].double()
        if real.numel():
            scales[b] = real.std(correction=0)
    return scales


def smoothgrad_noise(embedded: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor, samples: int,
                     sigma: float, seed: int) -> torch.Tensor:
    """The noise of every (example, sample): ``[batch, samples, seq, hidden]``, 0 at padding.

    ``embedded``: embedding output ``[batch, seq, hidden]``; ``mask``, ``input_ids``: ``[batch, seq]``.
    Per example b with ``n`` real tokens (``mask[b] == 1``, anywhere in the row): ``[samples, n,
    hidden]`` standard normal draws (float64) from :func:`example_generator` (seeded by ``seed``
    and the real token ids), times ``sigma * noise_scale(embedded, mask)[b]``, put at the real
    token positions in order. The padding and the rest of the batch change nothing."""
    batch, seq, hidden = embedded.shape
    noise = torch.zeros(batch, samples, seq, hidden, dtype=embedded.dtype)
    scales = noise_scale(embedded, mask) * float(sigma)
    for b in range(batch):
        if float(scales[b]) == 0.0:
            continue
        positions = mask[b].bool().nonzero().squeeze(-1)
        generator = example_generator(seed, input_ids[b], mask[b])
        draws = torch.randn(samples, len(positions), hidden, generator=generator, dtype=torch.float64)
        noise[b][:, positions] = (draws * scales[b]).to(embedded.dtype)
    return noise


def smoothgrad(model, inputs: Dict[str, torch.Tensor], labels: torch.Tensor, positions: Optional[torch.Tensor],
               samples: int = DEFAULT_SAMPLES, sigma: float = DEFAULT_SIGMA, seed: int = 0,
               rows_per_forward: int = 64, progress: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean gradient and mean (x + eps) * gradient at the noisy embedding outputs, both
    ``[batch, seq, hidden]`` (0 at padding)."""
    if samples < 1:
        raise UsageError(f"smoothgrad_samples must be >= 1, got {samples}")
    if sigma < 0:
        raise UsageError(f"smoothgrad_sigma must be >= 0, got {sigma}")
    if rows_per_forward < 1:
        raise UsageError(f"rows_per_forward must be >= 1, got {rows_per_forward}")
    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
    with torch.no_grad():
        embedded = model.base_model.embed(ids, types)  # any family (models/bert.py accessors)
    noise = smoothgrad_noise(embedded, mask, ids, samples, sigma, seed)
    gradient_sum = torch.zeros_like(embedded)
    product_sum = torch.zeros_like(embedded)
    pairs = [(b, k) for b in range(ids.shape[0]) for k in range(samples)]
    bar = _progress(len(pairs), "SmoothGrad", progress)
    try:
        for first in range(0, len(pairs), rows_per_forward):
            chunk = pairs[first:first + rows_per_forward]
            examples = torch.tensor([b for b, _ in chunk])
            draws = torch.tensor([k for _, k in chunk])
            noisy = (embedded[examples] + noise[examples, draws]).requires_grad_(True)
            output = model(attention_mask=mask[examples], embedding_output=noisy)
            score = select(logits_of(output), labels[examples], None if positions is None else positions[examples])
            (gradient,) = torch.autograd.grad(score.sum(), noisy)
            gradient_sum.index_add_(0, examples, gradient)
            product_sum.index_add_(0, examples, noisy.detach() * gradient)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    keep = mask.unsqueeze(-1).to(embedded.dtype)
    return gradient_sum / samples * keep, product_sum / samples * keep


def _options(context: MethodContext) -> dict:
    o = context.options
    return {"samples": o["smoothgrad_samples"], "sigma": o["smoothgrad_sigma"], "seed": o["seed"],
            "rows_per_forward": o["rows_per_forward"], "progress": context.progress}


def _run_gradient(context: MethodContext) -> MethodResult:
    gradient, _ = smoothgrad(context.model, context.inputs, context.target, context.target_position, **_options(context))
    return MethodResult(gradient.norm(dim=-1), gradient)


def _run_product(context: MethodContext) -> MethodResult:
    _, product = smoothgrad(context.model, context.inputs, context.target, context.target_position, **_options(context))
    return MethodResult(product.sum(-1), product)


SAMPLES = Option("smoothgrad_samples", int, DEFAULT_SAMPLES, "SmoothGrad: noisy copies per text", minimum=1,
                 maximum=10_000)  # a forward + backward row each; 400x the default
SIGMA = Option("smoothgrad_sigma", float, DEFAULT_SIGMA, "SmoothGrad: noise standard deviation as a multiple of the "
               "standard deviation of the text's embedding-output values over its real tokens", minimum=0.0,
               maximum=100.0)
OPTIONS = (SAMPLES, SIGMA, SEED, ROWS_PER_FORWARD)


def _rows(options: dict, words: int) -> int:
    return options["smoothgrad_samples"]  # one noisy copy of the text per sample


register(Method("smoothgrad", "SmoothGrad (GS)", aliases=("sg", "smoothgrad_gs"), reduction="l2",
                passes="smoothgrad_samples (default 25)", options=OPTIONS, run=_run_gradient, rows=_rows, color="#98df8a",
                summary="SmoothGrad: GS averaged over Gaussian noise on the embedding output "
                        "(--smoothgrad-samples, --smoothgrad-sigma)"))
register(Method("smoothgrad_x_input", "SmoothGrad (GI)", aliases=("sg_gi", "smoothgrad_gi"), reduction="sum",
                passes="smoothgrad_samples (default 25)", options=OPTIONS, run=_run_product, rows=_rows, color="#aec7e8",
                summary="SmoothGrad over GI: (x + noise) x gradient averaged over the noise"))
