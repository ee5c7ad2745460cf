"""Composites: which rule each operation of BERT uses (an attribution method is a composite).

The model never branches on a method name. Its layers call :mod:`bert_lrp.rules.ops`, which runs the
plain fast path when no :class:`RuleSet` is given and otherwise the rule Functions of
:mod:`bert_lrp.rules.functions` with the rules the composites choose.

Rules per operation (names from the LRP literature; ``jacobian`` is the operation's plain
backward, i.e. its Jacobian transposed times the incoming signal):

==============  ==============================================================================
operation       rules
==============  ==============================================================================
linear          ``epsilon`` (epsilon-LRP, Bach et al. 2015; ``epsilon = 0`` is LRP-0, exactly the
                gradient), ``gamma`` (generalised gamma rule, Montavon et al. 2019 / Andeol et
                al. 2021: the contributions that agree with the output's sign get ``gamma``
                times their weight added), ``zplus`` (z+, Montavon et al. 2017: positive
                contributions only), ``contribution_alpha_beta`` (Bach et al. 2015: positive
                contributions times alpha = 1 + beta, negative times beta), ``alpha_beta`` (Wu &
                Ong 2021, relevance signal: split by the sign of the *weight*, |R| rescaled per
                example to the incoming total), ``jacobian``. Linear layers may take different
                rules per kind (attention, ffn, pooler, classifier) and encoder layer:
                :class:`LinearOverride`.
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

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

RULES: Dict[str, Tuple[str, ...]] = {
    "linear": ("jacobian", "epsilon", "gamma", "zplus", "contribution_alpha_beta", "alpha_beta"),
    "layer_norm": ("jacobian", "detach_std"),
    "activation": ("jacobian", "identity"),
    "softmax": ("jacobian", "taylor", "detach"),
    "bilinear": ("jacobian", "uniform"),
    "residual": ("jacobian", "block_jacobian"),
}
SIGNALS = ("gradient", "relevance")
SITE_KINDS = ("embeddings", "attention", "ffn", "pooler", "classifier")  # kinds of linear layer a rule can target
TOKEN_PARTS = ("all", "word")  # a token's score: word + position + type shares, or the word's share alone
GRADIENT_SIGNAL_LINEAR = ("epsilon", "gamma", "zplus", "contribution_alpha_beta")


@dataclass(frozen=True)
class Site:
    """Where a linear layer sits: its ``kind`` (one of :data:`SITE_KINDS`) and, inside the encoder,
    its ``layer`` (0 = the layer nearest the embeddings; None for the pooler and the heads)."""

    kind: str
    layer: Optional[int] = None


@dataclass(frozen=True)
class LinearChoice:
    """The rule one linear layer applies, with its parameters (see the module docstring):
    ``epsilon`` (epsilon rule), ``gamma`` (gamma rule), ``beta`` (contribution alpha-beta, alpha =
    1 + beta), ``alpha`` (Wu & Ong's alpha-beta, beta = 1 - alpha) and the ``stabilizer`` the
    gamma, z+ and alpha-beta rules add to their denominators (with the denominator's sign)."""

    rule: str = "jacobian"
    epsilon: float = 0.0
    gamma: float = 0.25
    beta: float = 1.0
    alpha: float = 0.5
    stabilizer: float = 1e-7

    @property
    def is_gradient(self) -> bool:
        """LRP-0 and the Jacobian: the plain backward ``g @ W``."""
        return self.rule == "jacobian" or (self.rule == "epsilon" and self.epsilon == 0)


@dataclass(frozen=True)
class LinearOverride:
    """A linear rule for some linear layers: those of ``kinds`` (empty = every kind) in encoder
    layers ``first <= layer < last`` (``layers=None``: wherever they are, the pooler and the heads
    included; a layer range selects encoder layers only). Later overrides win."""

    rule: str
    kinds: Tuple[str, ...] = ()
    layers: Optional[Tuple[int, int]] = None
    epsilon: float = 0.0
    gamma: float = 0.25
    beta: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))

    def matches(self, site: Optional[Site]) -> bool:
        if site is None:
            return not self.kinds and self.layers is None
        if self.kinds and site.kind not in self.kinds:
            return False
        if self.layers is None:
            return True
        return site.layer is not None and self.layers[0] <= site.layer < self.layers[1]

    def check(self, where: str) -> None:
        if self.rule not in GRADIENT_SIGNAL_LINEAR + ("jacobian",):
            raise ValueError(f"{where}: rule must be one of {', '.join(GRADIENT_SIGNAL_LINEAR + ('jacobian',))}, "
                             f"got {self.rule!r}")
        for kind in self.kinds:
            if kind not in SITE_KINDS:
                raise ValueError(f"{where}: kinds: unknown kind {kind!r}; choose from {', '.join(SITE_KINDS)}")
        if self.layers is not None and (len(self.layers) != 2 or not 0 <= self.layers[0] < self.layers[1]):
            raise ValueError(f"{where}: layers must be [first, last) with 0 <= first < last, got {list(self.layers)}")
        _check_parameters(where, epsilon=self.epsilon, gamma=self.gamma, beta=self.beta)


def _check_parameters(where: str, **values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value!r}")


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
    alpha: float = 0.5          # alpha-beta rule (Wu & Ong): beta = 1 - alpha
    stabilizer: float = 1e-7    # gamma, z+ and alpha-beta rules: added to their denominators
    gamma: float = 0.25         # gamma rule: W -> W + gamma * W+ (or W-, by the output's sign)
    beta: float = 1.0           # contribution alpha-beta rule: alpha = 1 + beta
    linear_overrides: Tuple[LinearOverride, ...] = ()  # other linear rules for some kinds / layers
    token_parts: str = "all"    # a token's score: all embedding shares or the word's alone

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
        if self.signal == "relevance" and self.linear in GRADIENT_SIGNAL_LINEAR[1:]:
            raise ValueError(f"composite {self.name!r}: the {self.linear} rule is written for signal='gradient'")
        object.__setattr__(self, "linear_overrides", tuple(self.linear_overrides))
        if self.linear_overrides and self.signal != "gradient":
            raise ValueError(f"composite {self.name!r}: linear_overrides are written for signal='gradient'")
        for i, override in enumerate(self.linear_overrides):
            if not isinstance(override, LinearOverride):
                raise ValueError(f"composite {self.name!r}: linear_overrides[{i}] is not a LinearOverride")
            override.check(f"composite {self.name!r}: linear_overrides[{i}]")
        if self.token_parts not in TOKEN_PARTS:
            raise ValueError(f"composite {self.name!r}: token_parts must be one of {', '.join(TOKEN_PARTS)}")
        _check_parameters(f"composite {self.name!r}", epsilon=self.epsilon, gamma=self.gamma, beta=self.beta,
                          stabilizer=self.stabilizer)

    def linear_choice(self, site: Optional[Site] = None) -> LinearChoice:
        """The rule of the linear layer at ``site`` (None: a layer with no site, or the default)."""
        choice = LinearChoice(self.linear, self.epsilon, self.gamma, self.beta, self.alpha, self.stabilizer)
        for override in self.linear_overrides:
            if override.matches(site):
                choice = LinearChoice(override.rule, override.epsilon, override.gamma, override.beta,
                                      self.alpha, self.stabilizer)
        return choice

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready description (read back by :meth:`from_dict`)."""
        values = asdict(self)
        values["linear_overrides"] = [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(o).items()} for o in self.linear_overrides]
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "composite") -> "Composite":
        """The composite ``values`` describes; a ValueError names ``where`` and the field."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(values).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]!r}")
        fields = dict(values)
        overrides = fields.pop("linear_overrides", [])
        if not isinstance(overrides, list):
            raise ValueError(f"{where}: linear_overrides must be a list")
        parsed = []
        for i, override in enumerate(overrides):
            if not isinstance(override, Mapping):
                raise ValueError(f"{where}: linear_overrides[{i}] must be an object")
            allowed = set(LinearOverride.__dataclass_fields__)
            extra = sorted(set(override) - allowed)
            if extra:
                raise ValueError(f"{where}: linear_overrides[{i}]: unknown field {extra[0]!r}")
            try:
                parsed.append(LinearOverride(**{k: (tuple(v) if isinstance(v, list) else v)
                                                for k, v in override.items()}))
            except TypeError as error:
                raise ValueError(f"{where}: linear_overrides[{i}]: {error}") from None
        fields.setdefault("name", "tuned")
        try:
            return cls(**fields, linear_overrides=tuple(parsed))
        except TypeError as error:
            raise ValueError(f"{where}: {error}") from None
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None

    def is_gradient(self, operation: str) -> bool:
        """Whether this composite's rule for ``operation`` is the operation's plain backward
        (LRP-0 is the gradient; the Taylor softmax rule is the softmax Jacobian)."""
        rule = getattr(self, operation)
        if operation == "linear":
            return self.linear_choice().is_gradient and all(o.rule == "jacobian" or (o.rule == "epsilon" and o.epsilon == 0)
                                                            for o in self.linear_overrides)
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
    sites: Mapping[Any, Site] = field(default_factory=dict)  # linear module -> its site (per-site rules)

    @classmethod
    def of(cls, composites: Sequence[Composite | str], record_head_contexts: bool = False,
           sites: Optional[Mapping[Any, Site]] = None) -> "RuleSet":
        """``sites`` maps each linear module to its :class:`Site`; it is needed (and read) only
        when a composite has ``linear_overrides``."""
        slices, paired = [], []
        for composite in (get_composite(c) for c in composites):
            if len(composite.copies) == 2:
                paired.append(len(slices))
            slices.extend(composite.copies)
        return cls(tuple(slices), tuple(paired), [] if record_head_contexts else None, dict(sites or {}))

    def linear_choices(self, layer: Any) -> Tuple[LinearChoice, ...]:
        """Each copy's rule for the linear module ``layer`` (by its site when it has one)."""
        site = self.sites.get(layer)
        return tuple(c.linear_choice(site) for c in self.slices)

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
