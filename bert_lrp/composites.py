"""Composites: which rule each operation of BERT uses (an attribution method is a composite).

The model never branches on a method name. Its layers call :mod:`bert_lrp.ops`, which runs the
plain fast path when no :class:`RuleSet` is given and otherwise the rule Functions of
:mod:`bert_lrp.rules` with the modes the composites choose.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .rules import BackwardCounter


@dataclass(frozen=True)
class Composite:
    """Rule mode for each kind of operation (see :mod:`bert_lrp.rules` for their meaning)."""

    name: str
    linear: str = "gradient"
    layer_norm: str = "gradient"
    activation: str = "gradient"
    softmax: str = "gradient"
    bilinear: str = "gradient"
    epsilon: float = 1e-6
    alpha: float = 0.5


GRADIENT = Composite("gradient")

ATTNLRP = Composite(
    "attnlrp",  # Achtibat et al., ICML 2024
    layer_norm="constant_std",  # identity rule on 1/sigma, epsilon rule on the centring
    activation="identity",      # GELU and tanh pass relevance unchanged
    softmax="gradient",         # grad x input == first-order Taylor rule at the scores
    bilinear="uniform",         # half the relevance to each factor of Q K^T and A V
)

CP_LRP = Composite(
    "cp-lrp",  # Ali et al., ICML 2022, "AH+LN"
    layer_norm="constant_std",
    activation="identity",
    softmax="constant",  # attention probabilities are constants: relevance flows only through V
)

BERT_LRP = Composite(
    "bert-lrp",  # Wu & Ong 2021: alpha-beta (alpha = 0.5) with per-token |R| rescaling
    linear="alpha_beta",
    layer_norm="constant_std",  # grad x input through a true LayerNorm is ~0 (it is scale-invariant)
    activation="identity",
    alpha=0.5,
)

PRESETS: Dict[str, Composite] = {c.name: c for c in (ATTNLRP, CP_LRP, BERT_LRP, GRADIENT)}


def get_composite(rule: str | Composite) -> Composite:
    """Look a preset up by name (``attnlrp``, ``cp-lrp``, ``bert-lrp``, ``gradient``)."""
    if isinstance(rule, Composite):
        return rule
    try:
        return PRESETS[rule]
    except KeyError:
        raise ValueError(f"unknown LRP rule preset {rule!r}; choose one of {', '.join(PRESETS)}") from None


@dataclass
class RuleSet:
    """The composites of a (possibly stacked) batch, one per equal-sized slice along dim 0."""

    slices: Tuple[Composite, ...]
    counter: BackwardCounter = field(default_factory=BackwardCounter)
    head_contexts: Optional[List] = None  # when a list, attention layers append [batch, heads, seq, head_size]

    @classmethod
    def of(cls, composites: Sequence[Composite | str], counter: Optional[BackwardCounter] = None) -> "RuleSet":
        return cls(tuple(get_composite(c) for c in composites), counter or BackwardCounter())

    def modes(self, operation: str) -> Tuple[str, ...]:
        return tuple(getattr(c, operation) for c in self.slices)

    @property
    def epsilon(self) -> float:
        return next((c.epsilon for c in self.slices if c.linear == "epsilon"), GRADIENT.epsilon)

    @property
    def alpha(self) -> float:
        return next((c.alpha for c in self.slices if c.linear == "alpha_beta"), GRADIENT.alpha)
