"""Shapley values of the words for the target logit (value of a coalition = target logit with the
absent words' pieces replaced by the baseline token, ``[PAD]`` by default).

* up to ``shap_exact_words`` words (default 12): exact, by enumerating all 2^words coalitions;
* beyond: KernelSHAP (Lundberg & Lee 2017) with ``shap_samples`` coalitions (default 2048) drawn
  with a seeded generator: sizes from the Shapley kernel, paired with their complements, and a
  least-squares fit constrained so that the scores sum exactly to f(x) - f(baseline) (efficiency).

``extras["efficiency_gap"]`` ``[batch]`` = sum of word scores - (f(x) - f(all words absent)).
Word scores are spread evenly over the word's pieces.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch

from ..errors import UsageError
from .perturbation import (ROWS_PER_FORWARD, SEED, CoalitionScorer, Words, baseline_option, example_generator,
                           scorer_for, spread)
from .registry import Method, MethodContext, MethodResult, Option, register

DEFAULT_SAMPLES = 2048
DEFAULT_EXACT_WORDS = 12
MAX_EXACT_WORDS = 20
SAMPLES = Option("shap_samples", int, DEFAULT_SAMPLES, "SHAP: KernelSHAP coalitions per text beyond --shap-exact-words "
                 "words", minimum=2, maximum=100_000)  # a [coalitions, words] system and a forward row each
EXACT_WORDS = Option("shap_exact_words", int, DEFAULT_EXACT_WORDS, "SHAP: exact Shapley values (2^words forward rows) "
                     "up to this many words", minimum=0, maximum=MAX_EXACT_WORDS)


def all_coalitions(n: int) -> torch.Tensor:
    """``[2^n, n]`` bool, row k = the bits of k (word i present iff bit i is set)."""
    k = torch.arange(2 ** n).unsqueeze(1)
    return (k >> torch.arange(n)) & 1 == 1


def exact_shapley(z: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Shapley values ``[n]`` from the values ``[2^n]`` of all coalitions ``z`` ``[2^n, n]``."""
    n = z.shape[1]
    weights = torch.tensor([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
                           + [0.0], dtype=torch.float64)
    size = z.sum(1)
    present = weights[(size - 1).clamp_min(0)].unsqueeze(1) * z        # S contains i: + w(|S| - 1) f(S)
    absent = weights[size].unsqueeze(1) * ~z                           # S lacks i:    - w(|S|) f(S)
    return (present - absent).T @ values


def kernel_coalitions(n: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """``[samples, n]`` bool: sizes 1..n-1 drawn with the Shapley kernel's size weights
    (n - 1) / (s (n - s)), a uniform subset of that size, each followed by its complement."""
    sizes = torch.arange(1, n, dtype=torch.float64)
    draws = (samples + 1) // 2
    size = torch.multinomial((n - 1) / (sizes * (n - sizes)), draws, replacement=True, generator=generator) + 1
    ranks = torch.rand(draws, n, generator=generator).argsort(1).argsort(1)
    z = ranks < size.unsqueeze(1)
    return torch.stack([z, ~z], 1).reshape(-1, n)[:samples]


def kernel_shap_fit(z: torch.Tensor, values: torch.Tensor, full: float, empty: float) -> torch.Tensor:
    """Least squares ``values - empty ~ z @ phi`` subject to ``sum(phi) = full - empty`` (the
    coalitions are drawn from the kernel, so the regression is unweighted). Returns ``[n]``."""
    total = full - empty
    x = z.double()
    a = x[:, :-1] - x[:, -1:]
    b = values - empty - x[:, -1] * total
    rest = torch.linalg.lstsq(a, b.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    return torch.cat([rest, (total - rest.sum()).view(1)])


def shap_word_scores(scorer: CoalitionScorer, groups: Sequence[Words], inputs, samples: int = DEFAULT_SAMPLES,
                     exact_words: int = DEFAULT_EXACT_WORDS, seed: int = 0) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Per example ``[words]`` Shapley values (exact or KernelSHAP) and the efficiency gap ``[batch]``."""
    if samples < 2:
        raise UsageError(f"shap_samples must be >= 2, got {samples}")
    if not 0 <= exact_words <= MAX_EXACT_WORDS:
        raise UsageError(f"shap_exact_words must be in 0..{MAX_EXACT_WORDS} (2^words forward rows per text), "
                         f"got {exact_words}")
    requests, kinds = [], []
    for b, words in enumerate(groups):
        n = len(words)
        ends = torch.stack([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
        if n <= max(exact_words, 2):
            kinds.append("exact")
            requests.append((b, all_coalitions(n)))
        else:
            kinds.append("kernel")
            generator = example_generator(seed, inputs["input_ids"][b], inputs["attention_mask"][b])
            requests.append((b, torch.cat([ends, kernel_coalitions(n, samples, generator)])))
    values = scorer.score(requests)
    scores, gaps = [], []
    for (b, z), kind, v in zip(requests, kinds, values):
        n = z.shape[1]
        if kind == "exact":
            phi = exact_shapley(z, v) if n else torch.zeros(0, dtype=torch.float64)
            full, empty = float(v[-1]), float(v[0])
        else:
            full, empty = float(v[0]), float(v[1])
            phi = kernel_shap_fit(z[2:], v[2:], full, empty)
        scores.append(phi)
        gaps.append(float(phi.sum()) - (full - empty))
    return scores, torch.tensor(gaps, dtype=torch.float64)


def _run(context: MethodContext) -> MethodResult:
    options = context.options
    scorer, groups = scorer_for(context, "shap", "SHAP")
    words, gap = shap_word_scores(scorer, groups, context.inputs, options["shap_samples"], options["shap_exact_words"],
                                  options["seed"])
    scores = spread(words, groups, tuple(context.inputs["input_ids"].shape))
    return MethodResult(scores.to(torch.get_default_dtype()), extras={"efficiency_gap": gap})


def _rows(options: dict, words: int) -> int:
    """Forward rows for a text of ``words`` words: every coalition when exact, else the two ends
    and the samples (at most: repeated coalitions run once)."""
    if words <= max(options["shap_exact_words"], 2):
        return 2 ** words
    return options["shap_samples"] + 2


register(Method("shap", "SHAP", aliases=("kernel_shap", "shapley"),
                passes="2^words forwards (<= 12 words), else at most shap_samples + 2 (default 2050; repeats run once)",
                options=(baseline_option("shap"), SAMPLES, EXACT_WORDS, SEED, ROWS_PER_FORWARD), run=_run, rows=_rows,
                color="#bcbd22", summary="Shapley values of the words: exact up to 12 words, else seeded KernelSHAP "
                                         "(--shap-samples, --shap-baseline)"))
