"""LIME over words (Ribeiro, Singh & Guestrin 2016, their text recipe): ``lime_samples`` rows
(default 1000; the first is the input itself) in which a uniformly drawn number 1..words-1 of
uniformly drawn words are absent (pieces replaced by the baseline token, ``[PAD]`` by default);
each row is weighted by the kernel sqrt(exp(-d^2 / 0.25^2)) of its cosine distance d to the input
(as LIME's text explainer: width 25 on distances times 100); a weighted ridge regression (alpha 1,
with intercept) of the target logit on the word indicators gives the word scores.

``extras["r2"]`` ``[batch]``: the weighted R^2 of the fit. A text of one word gets
f(x) - f(baseline). Word scores are spread evenly over the word's pieces.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

from ..errors import UsageError
from .perturbation import (ROWS_PER_FORWARD, SEED, CoalitionScorer, Words, baseline_option, example_generator,
                           scorer_for, spread)
from .registry import Method, MethodContext, MethodResult, Option, register

DEFAULT_SAMPLES = 1000
KERNEL_WIDTH = 0.25
RIDGE_ALPHA = 1.0
SAMPLES = Option("lime_samples", int, DEFAULT_SAMPLES, "LIME: perturbed rows per text", minimum=2,
                 maximum=100_000)  # a [samples, words] design matrix and a forward row each: 20x LIME's usual 5,000


def lime_coalitions(n: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """``[samples, n]`` bool; row 0 = all present, then 1..n-1 words absent (uniform count and choice)."""
    removed = torch.randint(1, max(n, 2), (samples - 1,), generator=generator)
    ranks = torch.rand(samples - 1, n, generator=generator).argsort(1).argsort(1)
    z = ranks >= removed.unsqueeze(1)
    return torch.cat([torch.ones(1, n, dtype=torch.bool), z])


def lime_kernel(z: torch.Tensor, width: float = KERNEL_WIDTH) -> torch.Tensor:
    """``[samples]`` weights sqrt(exp(-d^2 / width^2)), d = cosine distance of each row to all-ones."""
    present = z.double().sum(1)
    distance = 1 - torch.sqrt(present / z.shape[1])
    return torch.sqrt(torch.exp(-distance ** 2 / width ** 2))


def weighted_ridge(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, alpha: float = RIDGE_ALPHA
                   ) -> Tuple[torch.Tensor, float, float]:
    """Ridge with intercept (intercept not penalised), sample weights: coefficients ``[features]``,
    intercept and weighted R^2."""
    w = weights  # unnormalised, as sklearn's Ridge(sample_weight=...): alpha keeps its meaning
    mean_x = (w.unsqueeze(1) * x).sum(0) / w.sum()
    mean_y = float((w * y).sum() / w.sum())
    xc, yc = x - mean_x, y - mean_y
    gram = xc.T @ (w.unsqueeze(1) * xc) + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    coef = torch.linalg.solve(gram, xc.T @ (w * yc))
    intercept = mean_y - float(mean_x @ coef)
    residual = y - (x @ coef + intercept)
    total = float((w * yc ** 2).sum())
    r2 = 1 - float((w * residual ** 2).sum()) / total if total > 0 else 1.0
    return coef, intercept, r2


def lime_word_scores(scorer: CoalitionScorer, groups: Sequence[Words], inputs, samples: int = DEFAULT_SAMPLES,
                     seed: int = 0) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Per example ``[words]`` LIME coefficients and the weighted R^2 ``[batch]``."""
    if samples < 2:
        raise UsageError(f"lime_samples must be >= 2, got {samples}")
    requests = []
    for b, words in enumerate(groups):
        n = len(words)
        if n <= 1:
            z = torch.tensor([[True] * n, [False] * n], dtype=torch.bool).reshape(2, n)
        else:
            z = lime_coalitions(n, samples, example_generator(seed, inputs["input_ids"][b], inputs["attention_mask"][b]))
        requests.append((b, z))
    values = scorer.score(requests)
    scores, fits = [], []
    for (_, z), v in zip(requests, values):
        if z.shape[1] <= 1:
            scores.append((v[:1] - v[1:]) if z.shape[1] else torch.zeros(0, dtype=torch.float64))
            fits.append(1.0)
            continue
        coef, _, r2 = weighted_ridge(z.double(), v, lime_kernel(z))
        scores.append(coef)
        fits.append(r2)
    return scores, torch.tensor(fits, dtype=torch.float64)


def _run(context: MethodContext) -> MethodResult:
    options = context.options
    scorer, groups = scorer_for(context, "lime", "LIME")
    words, r2 = lime_word_scores(scorer, groups, context.inputs, options["lime_samples"], options["seed"])
    scores = spread(words, groups, tuple(context.inputs["input_ids"].shape))
    return MethodResult(scores.to(torch.get_default_dtype()), extras={"r2": r2})


register(Method("lime", "LIME", passes="at most lime_samples forwards (default 1000; repeated rows run once)",
                options=(baseline_option("lime"), SAMPLES, SEED, ROWS_PER_FORWARD), run=_run, color="#e377c2",
                rows=lambda options, words: 1 if words == 0 else 2 if words == 1 else options["lime_samples"],
                summary="LIME over words: seeded word removal, cosine kernel 0.25, weighted ridge "
                        "(--lime-samples, --lime-baseline)"))
