"""Composites: which rule each operation of BERT uses (an attribution method is a composite).

The model never branches on a method name. Its layers call :mod:`bert_lrp.rules.ops`, which runs the
plain fast path when no :class:`RuleSet` is given and otherwise the rule Functions of
:mod:`bert_lrp.rules.functions` with the rules the composites choose.

Rules per operation (names from the LRP literature; ``jacobian`` is the operation's plain
backward, i.e. its Jacobian transposed times the incoming signal):

==============  ==============================================================================
operation       rules
==============  ==============================================================================
linear          a rule *object* (:mod:`bert_lrp.rules.linear`, registered by name): ``Epsilon``
                (``epsilon``: epsilon-LRP, Bach et al. 2015; ``epsilon = 0`` is LRP-0, exactly
                the gradient), ``Gamma`` (``gamma``: generalised gamma rule, Montavon et al.
                2019 / Andeol et al. 2021), ``ZPlus`` (``zplus``, Montavon et al. 2017),
                ``ContributionAlphaBeta`` (``contribution_alpha_beta``, Bach et al. 2015),
                ``AlphaBeta`` (``alpha_beta``, Wu & Ong 2021, relevance signal), ``Jacobian``
                (``jacobian``). A name stands for the rule with its default parameters. Linear
                layers may take other rules per kind (attention, ffn, pooler, classifier) and
                encoder layer: :class:`LinearOverride`.
layer_norm      ``jacobian`` (the full LayerNorm Jacobian), ``detach_std`` (identity rule on
                1/sigma: the normaliser is a constant, LN is linear)
activation      ``jacobian``, ``identity`` (relevance passes unchanged through GELU / tanh)
softmax         ``taylor`` (AttnLRP's first-order Taylor rule at the scores; under the gradient
                signal it *is* the Jacobian), ``jacobian``, ``detach`` (the probabilities are
                constants: CP-LRP). Encoder layers may take another softmax rule and value
                share: :class:`AttentionOverride`.
bilinear        ``jacobian`` (each factor of Q K^T and A V gets the whole product's signal),
                ``uniform`` (each factor gets half: AttnLRP)
residual        ``jacobian`` (both summands get the signal: under the gradient signal this is
                the epsilon rule on a sum, R_a = a / (a + b) R), ``block_jacobian`` (BERT-LRP:
                the skip connection gets the Jacobian of the *whole* sub-layer times R, the
                branch gets its own rules; runs as two stacked copies, see below)
==============  ==============================================================================

The rules of the other operations stay named choices: each is one branch of its Function's
backward (no parameters), and an object per operation would add a Python call per slice to the
attention and LayerNorm backwards for nothing a name does not already say.

``signal`` says what flows backwards. ``gradient``: a modified gradient g, and the relevance of a
tensor x is ``x * g`` (zennit's and LXT's convention); the backward starts from 1 at the target
logit. ``relevance``: the relevance itself (the original BERT-LRP code passes relevance as
``grad_outputs``); the backward starts from the target logit's value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch

from .linear import (SIGNALS, AlphaBeta, Epsilon, Jacobian, LinearLayerRule, as_linear_rule, linear_rule,
                     rule_class, rule_from_dict)

RULES: Dict[str, Tuple[str, ...]] = {  # the named rules of the operations other than linear
    "layer_norm": ("jacobian", "detach_std"),
    "activation": ("jacobian", "identity"),
    "softmax": ("jacobian", "taylor", "detach"),
    "bilinear": ("jacobian", "uniform"),
    "residual": ("jacobian", "block_jacobian"),
}
SITE_KINDS = ("embeddings", "attention", "ffn", "pooler", "classifier")  # kinds of linear layer a rule can target
TOKEN_PARTS = ("all", "word")  # a token's score: word + position + type shares, or the word's share alone
LEGACY_PARAMETERS = ("epsilon", "alpha", "stabilizer", "gamma", "beta")  # the flat parameters of version-1 files


@dataclass(frozen=True)
class Site:
    """Where a linear layer sits: its ``kind`` (one of :data:`SITE_KINDS`) and, inside the encoder,
    its ``layer`` (0 = the layer nearest the embeddings; None for the pooler and the heads)."""

    kind: str
    layer: Optional[int] = None


def LinearChoice(rule: str = "jacobian", **parameters: float) -> LinearLayerRule:  # noqa: N802 (the former class)
    """The former bag of every linear parameter, kept for callers of ``LinearChoice(rule, ...)``:
    the rule object named ``rule`` with the ``parameters`` it takes (the others are ignored, as
    the former dataclass carried them all). New code: :func:`~bert_lrp.rules.linear.linear_rule`
    or the classes (``Gamma(gamma=0.3)``)."""
    taken = {item.name for item in fields(rule_class(rule))}
    return linear_rule(rule, **{k: v for k, v in parameters.items() if k in taken})


def _whole_layers(layers: Sequence[Any]) -> Tuple[Any, ...]:
    """A layer range as a tuple, whole floats (JSON's 1.0) as ints; 0.5 stays, refused by :func:`_check_layers`."""
    return tuple(int(v) if isinstance(v, float) and v.is_integer() else v for v in layers)


def _check_layers(where: str, layers: Any) -> None:
    """A ValueError naming ``where`` unless ``layers`` is ``(first, last)``, whole, ``0 <= first < last``."""
    if not isinstance(layers, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in layers):
        shown = list(layers) if isinstance(layers, tuple) else layers
        raise ValueError(f"{where}: layers must be whole layer numbers [first, last), got {shown!r}")
    if len(layers) != 2 or not 0 <= layers[0] < layers[1]:
        raise ValueError(f"{where}: layers must be [first, last) with 0 <= first < last, got {list(layers)}")


@dataclass(frozen=True, init=False)
class LinearOverride:
    """A linear rule for some linear layers: those of ``kinds`` (empty = every kind) in encoder
    layers ``first <= layer < last`` (``layers=None``: wherever they are, the pooler and the heads
    included; a layer range selects encoder layers only). Later overrides win.

    ``rule`` is a rule object (``LinearOverride(Gamma(gamma=0.3), layers=(0, 2))``) or a rule name
    with its parameters as keywords (``LinearOverride("gamma", layers=(0, 2), gamma=0.3)``)."""

    rule: LinearLayerRule
    kinds: Tuple[str, ...] = ()
    layers: Optional[Tuple[int, int]] = None

    def __init__(self, rule: LinearLayerRule | str, kinds: Sequence[str] = (),
                 layers: Optional[Sequence[int]] = None, **parameters: float) -> None:
        if isinstance(rule, str):
            rule = linear_rule(rule, **parameters)
        elif parameters:
            raise ValueError(f"LinearOverride: parameters {', '.join(sorted(parameters))} go into the rule object, "
                             f"not beside it (got {rule!r})")
        object.__setattr__(self, "rule", as_linear_rule(rule))
        object.__setattr__(self, "kinds", (kinds,) if isinstance(kinds, str) else tuple(kinds))
        object.__setattr__(self, "layers", None if layers is None else _whole_layers(layers))

    def matches(self, site: Optional[Site]) -> bool:
        if site is None:
            return not self.kinds and self.layers is None
        if self.kinds and site.kind not in self.kinds:
            return False
        if self.layers is None:
            return True
        return site.layer is not None and self.layers[0] <= site.layer < self.layers[1]

    def check(self, where: str) -> None:
        for kind in self.kinds:
            if kind not in SITE_KINDS:
                raise ValueError(f"{where}: kinds: unknown kind {kind!r}; choose from {', '.join(SITE_KINDS)}")
        if self.layers is not None:
            _check_layers(where, self.layers)

    def to_dict(self) -> Dict[str, Any]:
        """``{"rule": {...}, "kinds": [...], "layers": [first, last] or None}`` (JSON-ready)."""
        return {"rule": self.rule.to_dict(), "kinds": list(self.kinds),
                "layers": None if self.layers is None else list(self.layers)}


@dataclass(frozen=True)
class AttentionOverride:
    """Other attention rules for the encoder layers ``first <= layer < last``: the ``softmax`` rule
    and the ``value_share`` (the share of ``A @ V``'s signal that goes to ``V``, the attention
    weights getting the rest); None keeps the composite's (or an earlier override's). Later
    overrides win, field by field. ``AttentionOverride((0, 1), softmax="detach", value_share=1.0)``
    is true CP-LRP in the first layer, whatever the others do."""

    layers: Tuple[int, int]
    softmax: Optional[str] = None
    value_share: Optional[float] = None

    def __post_init__(self) -> None:
        if isinstance(self.layers, (list, tuple)):
            object.__setattr__(self, "layers", _whole_layers(self.layers))

    def matches(self, layer: Optional[int]) -> bool:
        """Whether the override applies to encoder layer ``layer`` (None: no layer, never)."""
        return layer is not None and self.layers[0] <= layer < self.layers[1]

    def check(self, where: str) -> None:
        """A ValueError naming ``where`` and the field unless the override is well formed."""
        _check_layers(where, self.layers)
        if self.softmax is not None and self.softmax not in RULES["softmax"]:
            raise ValueError(f"{where}: softmax: unknown softmax rule {self.softmax!r}; choose from "
                             f"{', '.join(RULES['softmax'])}")
        _check_share(f"{where}: value_share", self.value_share)
        if self.softmax is None and self.value_share is None:
            raise ValueError(f"{where}: sets neither softmax nor value_share (an override that changes nothing)")

    def to_dict(self) -> Dict[str, Any]:
        """``{"layers": [first, last], "softmax": ... or None, "value_share": ... or None}`` (JSON-ready)."""
        return {"layers": list(self.layers), "softmax": self.softmax, "value_share": self.value_share}


class AttentionRules(NamedTuple):
    """One copy's rules for one attention layer: the ``softmax`` rule and the shares of the signal
    that the factors get: ``to_value`` (V) and ``to_weights`` (A) of ``A @ V``'s, ``to_query_key``
    (each of Q and K) of ``Q K^T``'s."""

    softmax: str
    to_value: float
    to_weights: float
    to_query_key: float

    @property
    def is_gradient(self) -> bool:
        """The plain backward of attention (a softmax rule that is its Jacobian, every share 1)."""
        return self.softmax != "detach" and self.to_value == self.to_weights == self.to_query_key == 1.0


def _check_share(where: str, share: Any) -> None:
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                              or not 0 <= share <= 1):
        raise ValueError(f"{where} must be a number in 0..1 or None, got {share!r}")


def _check_parameters(where: str, **values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Composite:
    """One rule per kind of operation: a rule object for the linear layers (a name stands for the
    rule with its default parameters), a named rule for each other operation."""

    name: str
    linear: LinearLayerRule = Jacobian()
    layer_norm: str = "jacobian"
    activation: str = "jacobian"
    softmax: str = "jacobian"
    bilinear: str = "jacobian"
    residual: str = "jacobian"
    signal: str = "gradient"
    linear_overrides: Tuple[LinearOverride, ...] = ()  # other linear rules for some kinds / layers
    token_parts: str = "all"    # a token's score: all embedding shares or the word's alone
    value_share: Optional[float] = None  # share of A @ V's signal to V (A: the rest); None: the bilinear rule's
    attention_overrides: Tuple[AttentionOverride, ...] = ()  # other softmax rules / value shares for some layers

    def __post_init__(self) -> None:
        where = f"composite {self.name!r}"
        try:
            object.__setattr__(self, "linear", as_linear_rule(self.linear))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        for operation, known in RULES.items():
            if getattr(self, operation) not in known:
                raise ValueError(f"{where}: unknown {operation} rule {getattr(self, operation)!r}; "
                                 f"choose from {', '.join(known)}")
        if self.signal not in SIGNALS:
            raise ValueError(f"{where}: signal must be one of {', '.join(SIGNALS)}")
        if self.residual == "block_jacobian" and self.signal != "relevance":
            raise ValueError(f"{where}: the residual rule 'block_jacobian' needs signal='relevance'")
        _check_signal(where, self.linear, self.signal)
        object.__setattr__(self, "linear_overrides", tuple(self.linear_overrides))
        for i, override in enumerate(self.linear_overrides):
            if not isinstance(override, LinearOverride):
                raise ValueError(f"{where}: linear_overrides[{i}] is not a LinearOverride")
            override.check(f"{where}: linear_overrides[{i}]")
            _check_signal(f"{where}: linear_overrides[{i}]", override.rule, self.signal)
        _check_share(f"{where}: value_share", self.value_share)
        object.__setattr__(self, "attention_overrides", tuple(self.attention_overrides))
        for i, override in enumerate(self.attention_overrides):
            if not isinstance(override, AttentionOverride):
                raise ValueError(f"{where}: attention_overrides[{i}] is not an AttentionOverride")
            override.check(f"{where}: attention_overrides[{i}]")
        if self.token_parts not in TOKEN_PARTS:
            raise ValueError(f"{where}: token_parts must be one of {', '.join(TOKEN_PARTS)}")

    def linear_rule_at(self, site: Optional[Site] = None) -> LinearLayerRule:
        """The rule of the linear layer at ``site`` (None: a layer with no site, or the default)."""
        rule = self.linear
        for override in self.linear_overrides:
            if override.matches(site):
                rule = override.rule
        return rule

    def attention_rule_at(self, layer: Optional[int] = None) -> Tuple[str, Optional[float]]:
        """``(softmax rule, value share)`` of the attention in encoder layer ``layer`` (None: the
        composite's own): each field from the last override that sets it for that layer."""
        softmax, value_share = self.softmax, self.value_share
        for override in self.attention_overrides:
            if override.matches(layer):
                softmax = softmax if override.softmax is None else override.softmax
                value_share = value_share if override.value_share is None else override.value_share
        return softmax, value_share

    def attention_rules(self, layer: Optional[int] = None) -> AttentionRules:
        """The attention rules of encoder layer ``layer`` (None: the composite's own): its softmax
        rule and the shares of ``A @ V``'s signal (the value share and the rest when set, else the
        bilinear rule's) and of ``Q K^T``'s (the bilinear rule's)."""
        softmax, value = self.attention_rule_at(layer)
        share = 0.5 if self.bilinear == "uniform" else 1.0
        return AttentionRules(softmax, share, share, share) if value is None else \
            AttentionRules(softmax, float(value), 1.0 - value, share)

    @property
    def per_layer(self) -> bool:
        """Whether some rule depends on the layer (linear or attention overrides): running it needs
        the model's sites (:func:`bert_lrp.models.sites.linear_sites`)."""
        return bool(self.linear_overrides or self.attention_overrides)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready description (read back by :meth:`from_dict`): the linear rule and each
        override's rule as ``{"name": ..., parameter: value}``. ``attention_overrides`` is written only
        when there are some (a composite without them reads as before, by earlier versions too)."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values["linear"] = self.linear.to_dict()
        values["linear_overrides"] = [o.to_dict() for o in self.linear_overrides]
        values["attention_overrides"] = [o.to_dict() for o in self.attention_overrides]
        if not self.attention_overrides:
            del values["attention_overrides"]
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "composite") -> "Composite":
        """The composite ``values`` describes (:meth:`to_dict`'s form, or the version-1 form of
        ``lrp_composite.json``: the linear rule by name beside flat ``epsilon``, ``gamma``, ``beta``,
        ``alpha`` and ``stabilizer``); a ValueError names ``where`` and the field."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(values).__name__}")
        try:
            if isinstance(values.get("linear", "jacobian"), str):
                return _from_version_1(cls, values, where)
            return _from_fields(cls, values, where)
        except TypeError as error:
            raise ValueError(f"{where}: {error}") from None
        except ValueError as error:
            message = str(error)
            raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None

    def is_gradient(self, operation: str) -> bool:
        """Whether this composite's rule for ``operation`` is the operation's plain backward
        (LRP-0 is the gradient; the Taylor softmax rule is the softmax Jacobian)."""
        if operation == "linear":
            return self.linear.is_gradient and all(o.rule.is_gradient for o in self.linear_overrides)
        rule = getattr(self, operation)
        if operation == "softmax":  # in every layer
            return all(o.softmax in (None, "jacobian", "taylor") for o in self.attention_overrides) and \
                rule in ("jacobian", "taylor")
        if operation == "bilinear":
            return rule == "jacobian" and self.value_share is None and \
                all(o.value_share is None for o in self.attention_overrides)
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
        jacobian_path = replace(self, name=f"{self.name}/jacobian-path", linear=Jacobian(), layer_norm="jacobian",
                                activation="jacobian", softmax="jacobian", bilinear="jacobian", residual="jacobian",
                                linear_overrides=(), value_share=None, attention_overrides=())
        return (self, jacobian_path)


def _check_signal(where: str, rule: LinearLayerRule, signal: str) -> None:
    if not rule.works_with(signal):
        needs = " or ".join(repr(s) for s in rule.signals)
        raise ValueError(f"{where}: the linear rule {rule.name!r} needs signal={needs}, got {signal!r}")


def _fields_of(values: Mapping[str, Any], allowed: Sequence[str], where: str) -> Dict[str, Any]:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    return dict(values)


def _overrides_of(values: Mapping[str, Any], where: str) -> List[Mapping[str, Any]]:
    overrides = values.get("linear_overrides", [])
    if not isinstance(overrides, list):
        raise ValueError(f"{where}: linear_overrides must be a list")
    for i, override in enumerate(overrides):
        if not isinstance(override, Mapping):
            raise ValueError(f"{where}: linear_overrides[{i}] must be an object")
    return overrides


def _attention_overrides_of(values: Mapping[str, Any], where: str) -> Tuple[AttentionOverride, ...]:
    """The ``attention_overrides`` of a composite's description (none when the field is absent)."""
    overrides = values.get("attention_overrides", [])
    if not isinstance(overrides, list):
        raise ValueError(f"{where}: attention_overrides must be a list")
    parsed = []
    for i, override in enumerate(overrides):
        label = f"{where}: attention_overrides[{i}]"
        if not isinstance(override, Mapping):
            raise ValueError(f"{label} must be an object")
        extra = sorted(set(override) - {"layers", "softmax", "value_share"})
        if extra:
            raise ValueError(f"{label}: unknown field {extra[0]!r}")
        if "layers" not in override:
            raise ValueError(f"{label}: field 'layers' is missing")
        layers = override["layers"]
        parsed.append(AttentionOverride(tuple(layers) if isinstance(layers, list) else layers,
                                        override.get("softmax"), override.get("value_share")))
    return tuple(parsed)  # each checked by the Composite, naming its index


def _from_fields(cls, values: Mapping[str, Any], where: str) -> "Composite":
    """:meth:`Composite.to_dict`'s form."""
    known = [item.name for item in fields(cls)]
    items = _fields_of(values, known, where)
    try:
        items["linear"] = rule_from_dict(items["linear"])
    except ValueError as error:
        raise ValueError(f"{where}: linear: {error}") from None
    parsed = []
    for i, override in enumerate(_overrides_of(values, where)):
        label = f"{where}: linear_overrides[{i}]"
        extra = sorted(set(override) - {"rule", "kinds", "layers"})
        if extra:
            raise ValueError(f"{label}: unknown field {extra[0]!r}")
        try:
            rule = rule_from_dict(override.get("rule"))
            parsed.append(LinearOverride(rule, override.get("kinds", ()), override.get("layers")))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{label}: {error}") from None
    items["linear_overrides"] = tuple(parsed)
    items["attention_overrides"] = _attention_overrides_of(values, where)
    items.setdefault("name", "tuned")
    return cls(**items)


def _from_version_1(cls, values: Mapping[str, Any], where: str) -> "Composite":
    """The version-1 form: ``linear`` a rule name, its parameters flat beside it (``epsilon``,
    ``alpha``, ``stabilizer``, ``gamma``, ``beta``); an override's rule a name with its own
    ``epsilon``, ``gamma`` and ``beta``, alpha and the stabilizer from the composite."""
    known = [item.name for item in fields(cls)] + list(LEGACY_PARAMETERS)
    items = _fields_of(values, known, where)
    defaults = {"epsilon": 0.0, "alpha": 0.5, "stabilizer": 1e-7, "gamma": 0.25, "beta": 1.0}
    flat = {k: items.pop(k, v) for k, v in defaults.items()}
    _check_parameters(where, **{k: flat[k] for k in ("epsilon", "gamma", "beta", "stabilizer")})
    items["linear"] = _version_1_rule(items.get("linear", "jacobian"), flat, where)
    parsed = []
    for i, override in enumerate(_overrides_of(values, where)):
        label = f"{where}: linear_overrides[{i}]"
        extra = sorted(set(override) - {"rule", "kinds", "layers", "epsilon", "gamma", "beta"})
        if extra:
            raise ValueError(f"{label}: unknown field {extra[0]!r}")
        own = {**flat, **{k: override[k] for k in ("epsilon", "gamma", "beta") if k in override}}
        _check_parameters(label, **{k: own[k] for k in ("epsilon", "gamma", "beta")})
        rule = _version_1_rule(override.get("rule"), own, label)
        layers = override.get("layers")
        parsed.append(LinearOverride(rule, tuple(override.get("kinds", ())), None if layers is None else tuple(layers)))
    items["linear_overrides"] = tuple(parsed)
    items["attention_overrides"] = _attention_overrides_of(values, where)
    items.setdefault("name", "tuned")
    return cls(**items)


def _version_1_rule(name: Any, parameters: Mapping[str, float], where: str) -> LinearLayerRule:
    """The rule ``name`` with the version-1 ``parameters`` it takes."""
    if not isinstance(name, str):
        raise ValueError(f"{where}: rule must be a rule name, got {name!r}")
    try:
        taken = {item.name for item in fields(rule_class(name))}
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return linear_rule(name, **{k: v for k, v in parameters.items() if k in taken})


GRADIENT = Composite("gradient")  # every operation's plain Jacobian: GS, and GI = input x GS

ATTNLRP = Composite(
    "attnlrp",                  # Achtibat et al., ICML 2024 (as LXT's efficient mode)
    linear=Epsilon(0.0),        # epsilon -> 0: the bias keeps its share, as in LXT
    layer_norm="detach_std",    # identity rule on 1/sigma
    activation="identity",      # GELU and tanh pass relevance unchanged
    softmax="taylor",           # first-order Taylor expansion at the scores
    bilinear="uniform",         # half the relevance to each factor of Q K^T and A V
)

CP_LRP = Composite(
    "cp-lrp",                   # Ali et al., ICML 2022, "AH+LN"
    linear=Epsilon(0.0),
    layer_norm="detach_std",
    activation="identity",
    softmax="detach",           # attention probabilities are constants: relevance flows only through V
)

BERT_LRP = Composite(
    "bert-lrp",                 # Wu & Ong 2021, the original code's backward_lrp, op by op
    signal="relevance",         # relevance is passed backwards as such (their grad_outputs)
    linear=AlphaBeta(alpha=0.5, stabilizer=1e-7),  # every dense layer: weight-sign alpha-beta, |R| rescaled
    layer_norm="jacobian",      # relevance times the full LayerNorm Jacobian
    activation="identity",      # GELU and the pooler's tanh: relevance passes unchanged
    softmax="jacobian",         # Q, K, V get the attention core's Jacobian times R ("quick" detour)
    bilinear="jacobian",
    residual="block_jacobian",  # the skip connection gets the whole sub-layer's Jacobian times R
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
    (``residual='block_jacobian'``). All slices hold copies of the same inputs. Each linear
    module's rules (one per slice) are resolved once, here, not at every call.

    ``separate_backward``: the batch holds the inputs once (not one copy per composite), the
    forward runs once, and the caller walks the graph once per composite, setting ``active[0]``
    to that composite's index before each walk (the rule Functions read it in their backward).
    Not with ``paired`` composites (their Jacobian path meets them inside one walk).
    """

    slices: Tuple[Composite, ...]
    paired: Tuple[int, ...] = ()
    head_contexts: Optional[List] = None  # when a list, attention layers append [batch, heads, seq, head_size]
    sites: Mapping[Any, Site] = field(default_factory=dict)  # linear module -> its site (per-site rules)
    separate_backward: bool = False
    active: List[int] = field(default_factory=lambda: [0])  # separate_backward: the copy the running walk applies

    def __post_init__(self) -> None:
        if self.separate_backward and self.paired:
            raise ValueError("RuleSet: separate_backward cannot carry a Jacobian path (residual='block_jacobian')")
        unplaced = [c.name for c in self.slices if c.per_layer]
        if unplaced and not self.sites:  # per-layer rules would silently be every layer's
            raise ValueError(f"RuleSet: composite {unplaced[0]!r} has per-layer overrides; pass "
                             "sites=linear_sites(model) (bert_lrp.models.sites)")
        self._resolve_linear_rules()
        self._resolve_attention_rules()

    def _resolve_linear_rules(self) -> None:
        default = tuple(c.linear_rule_at(None) for c in self.slices)  # a module without a site
        per_site = any(c.linear_overrides for c in self.slices)
        by_module = {module: tuple(c.linear_rule_at(site) for c in self.slices)
                     for module, site in self.sites.items()} if per_site else {}
        object.__setattr__(self, "_default_linear", default)
        object.__setattr__(self, "_linear_by_module", by_module)

    def _resolve_attention_rules(self) -> None:
        """Each copy's attention rules, once: by the query projection of each encoder layer's
        attention (a module of kind ``attention`` with a layer) when a composite has attention
        overrides, else the composites' own for every layer."""
        default = tuple(c.attention_rules(None) for c in self.slices)
        by_module = {}
        if any(c.attention_overrides for c in self.slices):
            by_module = {module: tuple(c.attention_rules(site.layer) for c in self.slices)
                         for module, site in self.sites.items() if site.kind == "attention" and site.layer is not None}
        object.__setattr__(self, "_default_attention", default)
        object.__setattr__(self, "_attention_by_module", by_module)

    @classmethod
    def of(cls, composites: Sequence[Composite | str], record_head_contexts: bool = False,
           sites: Optional[Mapping[Any, Site]] = None, separate_backward: bool = False) -> "RuleSet":
        """``sites`` maps each linear module to its :class:`Site`; it is needed (and read) only
        when a composite has per-layer rules (:attr:`Composite.per_layer`: linear or attention
        overrides; without ``sites`` such a composite is refused). ``separate_backward``: one forward, one walk of
        the graph per composite (see the class); ignored (stacked copies) when a composite has a
        Jacobian path or there is one composite."""
        slices, paired = [], []
        for composite in (get_composite(c) for c in composites):
            if len(composite.copies) == 2:
                paired.append(len(slices))
            slices.extend(composite.copies)
        separate = separate_backward and not paired and len(slices) > 1
        return cls(tuple(slices), tuple(paired), [] if record_head_contexts else None, dict(sites or {}), separate)

    def linear_rules(self, layer: Any) -> Tuple[LinearLayerRule, ...]:
        """Each copy's rule for the linear module ``layer`` (by its site when it has one)."""
        return self._linear_by_module.get(layer, self._default_linear)

    def attention_rules(self, query: Any = None) -> Tuple[AttentionRules, ...]:
        """Each copy's rules for the attention whose query projection is the linear module ``query``
        (its layer's, by the module's site; None or a module without a site: the composites' own)."""
        return self._attention_by_module.get(query, self._default_attention)

    def runs_plain_attention(self, rules: Sequence[AttentionRules]) -> bool:
        """:meth:`runs_plain` for one attention layer whose copies have ``rules``."""
        return (len(self.slices) == 1 or self.separate_backward) and all(r.is_gradient for r in rules)

    def runs_plain(self, *operations: str) -> bool:
        """The batch holds the inputs once (one copy, or one backward per copy) and every copy's
        rules for ``operations`` are their plain backwards: the native operations compute exactly
        that, without a rule Function (and its Python) in the graph."""
        return ((len(self.slices) == 1 or self.separate_backward)
                and all(c.is_gradient(op) for c in self.slices for op in operations))

    def index(self, composite: Composite) -> int:
        """Slice index of ``composite`` (its first copy)."""
        return self.slices.index(composite)

    @property
    def copies(self) -> int:
        """Copies of the inputs the batch holds along dim 0 (1 with one backward per copy)."""
        return 1 if self.separate_backward else len(self.slices)
