"""Occlusion (leave one word out): a word's score is f(x) - f(x without the word), where f is the
target logit and "without" replaces all the word's pieces by the baseline token (``[PAD]`` by
default; ``mask``, ``unk`` or ``remove``). One row per word plus the input itself, every row of the
batch in shared forward passes of at most ``rows_per_forward`` rows. Word scores are spread evenly
over the word's pieces (see :mod:`bert_lrp.attribution.perturbation`)."""
from __future__ import annotations

from typing import List, Sequence

import torch

from .perturbation import ROWS_PER_FORWARD, CoalitionScorer, Words, baseline_option, scorer_for, spread
from .registry import Method, MethodContext, MethodResult, register


def occlusion_word_scores(scorer: CoalitionScorer, groups: Sequence[Words]) -> List[torch.Tensor]:
    """Per example ``[words]``: target logit with all words minus with that word occluded."""
    requests = []
    for b, words in enumerate(groups):
        n = len(words)
        z = torch.ones(n + 1, n, dtype=torch.bool)
        z[1:] &= ~torch.eye(n, dtype=torch.bool)  # row 0: the input; row 1 + i: word i occluded
        requests.append((b, z))
    values = scorer.score(requests)
    return [v[0] - v[1:] for v in values]


def _run(context: MethodContext) -> MethodResult:
    scorer, groups = scorer_for(context, "occlusion", "occlusion")
    words = occlusion_word_scores(scorer, groups)
    scores = spread(words, groups, tuple(context.inputs["input_ids"].shape))
    return MethodResult(scores.to(torch.get_default_dtype()))


register(Method("occlusion", "Occlusion", aliases=("loo", "leave_one_out"), passes="words + 1 forwards",
                options=(baseline_option("occlusion"), ROWS_PER_FORWARD), run=_run, color="#17becf",
                rows=lambda options, words: words + 1,  # the text, then each word left out
                summary="leave one word out: target logit drop when the word's pieces become [PAD] "
                        "(--occlusion-baseline)"))
