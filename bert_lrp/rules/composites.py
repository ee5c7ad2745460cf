"""Composites: which rule each operation of BERT uses (an attribution method is a composite).

The model never branches on a method name. Its layers call :mod:`bert_lrp.rules.ops`, which runs the
plain fast path when no :class:`RuleSet` is given and otherwise the rule Functions of
:mod:`bert_lrp.rules.functions` with the rules the composites choose.

Rules per operation (names from the LRP literature; ``jacobian`` is the operation's plain
backward, i.e. its Jacobian transposed times the incoming signal):

==============  ==============================================================================
operation       rules
==============  ==============================================================================
linear          ``epsilon`` (epsilon-LRP; ``epsilon = 0`` is LRP-0, exactly the gradient),
                ``alpha_beta`` (Wu & Ong 2021: split by the sign of the *weight*, |R| rescaled
                per example to the incoming total), ``jacobian``
layer_norm      ``jacobian`` (the full LayerNorm Jacobian), ``detach_std`` (identity rule on
                1/sigma: the normaliser is a constant, LN is linear)
activation      ``jacobian``, ``identity`` (relevance passes unchanged through GELU / tanh)
softmax         ``taylor`` (AttnLRP's first-order Taylor rule at the scores; under the gradient
                signal it *is* the Jacobian), ``jacobian``, ``detach`` (the probabilities are
                constants: CP-LRP)
bilinear        ``jacobian`` (each factor of Q K^T and A V gets the whole product's signal),
                ``uniform`` (each factor gets half: AttnLRP)
residual        ``jacobian`` (both summands get the signal: under the gradient signal this is
                the epsilon rule on a sum, R_a = a / (a + b) R), ``block_jacobian`` (BERT-LRP:
                the skip connection gets the Jacobian of the *whole* sub-layer times R, the
                branch gets its own rules; runs as two stacked copies, see below)
==============  ==============================================================================

``signal`` says what flows backwards. ``gradient``: a modified gradient g, and the relevance of a
tensor x is ``x * g`` (zennit's and LXT's convention); the backward starts from 1 at the target
logit. ``relevance``: the relevance itself (the original BERT-LRP code passes relevance as
``grad_outputs``); the backward starts from the target logit's value.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch

RULES: Dict[str, Tuple[str, ...]] = {
    "linear": ("jacobian", "epsilon", "alpha_beta"),
    "layer_norm": ("jacobian", "detach_std"),
    "activation": ("jacobian", "identity"),
    "softmax": ("jacobian", "taylor", "detach"),
    "bilinear": ("jacobian", "uniform"),
    "residual": ("jacobian", "block_jacobian"),
}
SIGNALS = ("gradient", "relevance")


@dataclass(frozen=True)
class Composite:
    """One rule per kind of operation, and the parameters those rules take."""

    name: str
    linear: str = "jacobian"
    layer_norm: str = "jacobian"
    activation: str = "jacobian"
    softmax: str = "jacobian"
    bilinear: str = "jacobian"
    residual: str = "jacobian"
    signal: str = "gradient"
    epsilon: float = 0.0        # epsilon rule: z -> z + epsilon * sign(z)
    alpha: float = 0.5          # alpha-beta rule: beta = 1 - alpha
    stabilizer: float = 1e-7    # alpha-beta rule: added to the positive / negative pre-activations

    def __post_init__(self) -> None:
        for operation, known in RULES.items():
            if getattr(self, operation) not in known:
                raise ValueError(f"composite {self.name!r}: unknown {operation} rule {getattr(self, operation)!r}; "
                                 f"choose from {', '.join(known)}")
        if self.signal not in SIGNALS:
            raise ValueError(f"composite {self.name!r}: signal must be one of {', '.join(SIGNALS)}")
        relevance_only = {"linear": "alpha_beta", "residual": "block_jacobian"}
        for operation, rule in relevance_only.items():
            if getattr(self, operation) == rule and self.signal != "relevance":
                raise ValueError(f"composite {self.name!r}: the {operation} rule {rule!r} needs signal='relevance'")
        if self.signal == "relevance" and self.linear == "epsilon" and self.epsilon != 0:
            raise ValueError(f"composite {self.name!r}: the epsilon rule is written for signal='gradient'")

    def is_gradient(self, operation: str) -> bool:
        """Whether this composite's rule for ``operation`` is the operation's plain backward
        (LRP-0 is the gradient; the Taylor softmax rule is the softmax Jacobian)."""
        rule = getattr(self, operation)
        if operation == "linear":
            return rule == "jacobian" or (rule == "epsilon" and self.epsilon == 0)
        if operation == "softmax":
            return rule in ("jacobian", "taylor")
        return rule == "jacobian"

    def relevance_at(self, tensor: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        """Relevance of ``tensor`` from the signal that reached it in the backward pass:
        ``tensor * signal`` for the gradient signal (the gradient x input reading of LRP), the
        signal itself for the relevance signal (``bert-lrp``). Same shape as ``tensor``."""
        return signal if self.signal == "relevance" else tensor.detach() * signal

    @property
    def copies(self) -> Tuple["Composite", ...]:
        """The stacked copies this composite runs as: itself, plus a Jacobian path for
        ``residual='block_jacobian'`` (the skip connections' share of every sub-layer)."""
        if self.residual != "block_jacobian":
            return (self,)
        jacobian_path = replace(self, name=f"{self.name}/jacobian-path", linear="jacobian", layer_norm="jacobian",
                                activation="jacobian", softmax="jacobian", bilinear="jacobian", residual="jacobian")
        return (self, jacobian_path)


GRADIENT = Composite("gradient")  # every operation's plain Jacobian: GS, and GI = input x GS

ATTNLRP = Composite(
    "attnlrp",                  # Achtibat et al., ICML 2024 (as LXT's efficient mode)
    linear="epsilon",           # epsilon -> 0: the bias keeps its share, as in LXT
    layer_norm="detach_std",    # identity rule on 1/sigma
    activation="identity",      # GELU and tanh pass relevance unchanged
    softmax="taylor",           # first-order Taylor expansion at the scores
    bilinear="uniform",         # half the relevance to each factor of Q K^T and A V
)

CP_LRP = Composite(
    "cp-lrp",                   # Ali et al., ICML 2022, "AH+LN"
    linear="epsilon",
    layer_norm="detach_std",
    activation="identity",
    softmax="detach",           # attention probabilities are constants: relevance flows only through V
)

BERT_LRP = Composite(
    "bert-lrp",                 # Wu & Ong 2021, the original code's backward_lrp, op by op
    signal="relevance",         # relevance is passed backwards as such (their grad_outputs)
    linear="alpha_beta",        # every dense layer: weight-sign alpha-beta, alpha 0.5, |R| rescaled
    layer_norm="jacobian",      # relevance times the full LayerNorm Jacobian
    activation="identity",      # GELU and the pooler's tanh: relevance passes unchanged
    softmax="jacobian",         # Q, K, V get the attention core's Jacobian times R ("quick" detour)
    bilinear="jacobian",
    residual="block_jacobian",  # the skip connection gets the whole sub-layer's Jacobian times R
    alpha=0.5, stabilizer=1e-7,
)

PRESETS: Dict[str, Composite] = {c.name: c for c in (ATTNLRP, CP_LRP, BERT_LRP, GRADIENT)}
LRP_PRESETS: Tuple[str, ...] = ("attnlrp", "cp-lrp", "bert-lrp")


def get_composite(rule: str | Composite) -> Composite:
    """Look a preset up by name (``attnlrp``, ``cp-lrp``, ``bert-lrp``, ``gradient``)."""
    if isinstance(rule, Composite):
        return rule
    try:
        return PRESETS[rule]
    except KeyError:
        raise ValueError(f"unknown LRP rule preset {rule!r}; choose one of {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class RuleSet:
    """The rules of a stacked batch: one composite per equal-sized slice along dim 0.

    ``paired`` holds the slice index of each composite whose next slice is its Jacobian path
    (``residual='block_jacobian'``). All slices hold copies of the same inputs.
    """

    slices: Tuple[Composite, ...]
    paired: Tuple[int, ...] = ()
    head_contexts: Optional[List] = None  # when a list, attention layers append [batch, heads, seq, head_size]

    @classmethod
    def of(cls, composites: Sequence[Composite | str], record_head_contexts: bool = False) -> "RuleSet":
        slices, paired = [], []
        for composite in (get_composite(c) for c in composites):
            if len(composite.copies) == 2:
                paired.append(len(slices))
            slices.extend(composite.copies)
        return cls(tuple(slices), tuple(paired), [] if record_head_contexts else None)

    def runs_plain(self, *operations: str) -> bool:
        """One copy whose rules for ``operations`` are their plain backwards: the native operations
        compute exactly that, without a rule Function (and its Python) in the graph."""
        return len(self.slices) == 1 and all(self.slices[0].is_gradient(op) for op in operations)

    def index(self, composite: Composite) -> int:
        """Slice index of ``composite`` (its first copy)."""
        return self.slices.index(composite)

    @property
    def copies(self) -> int:
        return len(self.slices)
