"""The rules of a linear layer as objects: one class per rule, registered by name.

A rule is a frozen dataclass: its fields are its parameters (checked when it is made: finite
numbers >= 0), its :meth:`LinearLayerRule.signal` is the layer's backward under the rule. The
registry (:func:`register_rule`) maps each rule's ``name`` to its class, so that a composite, a
per-site override, ``lrp_composite.json`` and the tuning search all find a rule by name and a new
rule is one class in one module::

    @register_rule
    class Doubled(LinearLayerRule):
        name = "doubled"
        search_grid = {"scale": (1.0, 2.0, 4.0)}   # the values tune-lrp tries (omit: never proposed)
        scale: float = 2.0

        def signal(self, x, weight, bias, grad, output):
            return self.scale * (grad @ weight)

The rules (names from the LRP literature; see :mod:`bert_lrp.rules.composites` for the two
signal conventions): ``jacobian`` (the plain backward ``g W``), ``epsilon`` (Bach et al. 2015;
``epsilon = 0`` is LRP-0, exactly the gradient), ``gamma`` (Montavon et al. 2019, generalised by
Andeol et al. 2021), ``zplus`` (Montavon et al. 2017), ``contribution_alpha_beta`` (Bach et al.
2015, alpha = 1 + beta) and ``alpha_beta`` (Wu & Ong 2021, relevance signal only).
"""
from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Type

import torch
import torch.nn.functional as F

SIGNALS = ("gradient", "relevance")


@dataclass(frozen=True)
class LinearLayerRule:
    """How a linear layer ``y = x W^T + b`` (``x [..., in]``, ``W [out, in]``, ``b [out]``) sends a
    signal back. Subclasses set the class attributes below, declare their parameters as dataclass
    fields (floats, checked: finite, >= 0) and implement :meth:`signal`; :func:`register_rule`
    makes them frozen dataclasses and findable by ``name``."""

    name: ClassVar[str] = ""
    # the composite signals the rule is written for ("gradient": relevance = x * signal; "relevance")
    signals: ClassVar[Tuple[str, ...]] = ("gradient",)
    # whether signal() reads the layer's output y (then the forward keeps it instead of recomputing)
    keeps_output: ClassVar[bool] = True
    # whether the signal reads the layer's input x; False: it is output_signal(grad, y) @ W
    reads_input: ClassVar[bool] = True
    # parameter -> the values tune-lrp tries, ascending; None: the search never proposes the rule
    search_grid: ClassVar[Optional[Mapping[str, Tuple[float, ...]]]] = None

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{self.name} rule: {item.name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, item.name, float(value))

    @property
    def is_gradient(self) -> bool:
        """Whether the rule's signal is the plain backward ``g @ W`` (then the layer runs natively)."""
        return False

    def output_signal(self, grad: torch.Tensor, output: torch.Tensor) -> Optional[torch.Tensor]:
        """For a rule whose signal is ``output_signal(grad, y) @ W`` -- a function of the layer's
        output ``y`` and the signal ``grad`` there alone, as epsilon's -- that signal ``[..., out]``;
        None for the rules that read the input (then :meth:`signal` runs in a rule Function). A
        rule that sets ``reads_input = False`` and returns a tensor here runs, alone in a rule set,
        as the native linear layer with one hook on its output (no Function, no saved input)."""
        return None

    def works_with(self, signal: str) -> bool:
        """Whether the rule is written for a composite whose ``signal`` is this (the gradient
        works with both)."""
        return signal in self.signals or self.is_gradient

    def signal(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], grad: torch.Tensor,
               output: Optional[torch.Tensor]) -> torch.Tensor:
        """The signal ``[..., in]`` the layer sends back from ``grad [..., out]`` at its output.

        Gradient-signal rules return the signal whose product with ``x`` is the rule's input
        relevance (the output's relevance is ``y * grad``); relevance-signal rules return the input
        relevance itself. ``output``: ``y`` when the forward kept it, else None (recompute it with
        :func:`layer_output`)."""
        raise NotImplementedError(f"{type(self).__name__}.signal")

    def parameters(self) -> Dict[str, float]:
        """The rule's parameters by name."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    def to_dict(self) -> Dict[str, Any]:
        """``{"name": ..., parameter: value, ...}`` (JSON-ready; read back by :func:`rule_from_dict`)."""
        return {"name": self.name, **self.parameters()}

    def describe(self) -> str:
        """Short text: the name and the parameters that differ from the defaults, ``gamma(gamma=0.3)``."""
        defaults = type(self)().parameters()
        values = ", ".join(f"{k}={v:g}" for k, v in self.parameters().items() if v != defaults[k])
        return f"{self.name}({values})" if values else self.name


def layer_output(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                 output: Optional[torch.Tensor]) -> torch.Tensor:
    """``y = x W^T + b``: ``output`` when the forward kept it, else recomputed."""
    return F.linear(x, weight, bias) if output is None else output


# ------------------------------------------------------------------------------ the registry
_RULES: Dict[str, Type[LinearLayerRule]] = {}  # name -> class; changed only by register_rule / unregister_rule


def register_rule(cls: Type[LinearLayerRule]) -> Type[LinearLayerRule]:
    """Class decorator: make ``cls`` a frozen dataclass (if it is not one already) and register it
    under ``cls.name``. A name already taken is refused."""
    if not (isinstance(cls, type) and issubclass(cls, LinearLayerRule)):
        raise TypeError(f"register_rule: {cls!r} is not a LinearLayerRule subclass")
    if "__dataclass_fields__" not in cls.__dict__:
        cls = dataclass(frozen=True)(cls)
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_rule: {cls.__name__} needs a class attribute name = '...'")
    if name in _RULES:
        raise ValueError(f"register_rule: a linear rule named {name!r} is already registered ({_RULES[name].__name__})")
    fields = [item.name for item in dataclasses.fields(cls)]
    if "name" in fields:
        raise ValueError(f"register_rule: {cls.__name__}: 'name' cannot be a parameter")
    if not set(cls.signals) <= set(SIGNALS):
        raise ValueError(f"register_rule: {cls.__name__}.signals must be among {', '.join(SIGNALS)}")
    if cls.search_grid is not None:
        unknown = sorted(set(cls.search_grid) - set(fields))
        if unknown:
            raise ValueError(f"register_rule: {cls.__name__}.search_grid: {unknown[0]!r} is not a parameter")
        cls.search_grid = types.MappingProxyType({k: tuple(sorted(float(v) for v in values))
                                                  for k, values in cls.search_grid.items()})
    _RULES[name] = cls
    return cls


def unregister_rule(name: str) -> None:
    """Remove the rule registered as ``name`` (for tests that register a rule of their own)."""
    _RULES.pop(name, None)


def rule_names() -> Tuple[str, ...]:
    """The registered rules' names, in registration order."""
    return tuple(_RULES)


def rule_class(name: str) -> Type[LinearLayerRule]:
    """The class registered as ``name``; a ValueError names the known rules."""
    try:
        return _RULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown linear rule {name!r}; choose from {', '.join(_RULES)}") from None


def linear_rule(name: str, **parameters: float) -> LinearLayerRule:
    """The rule ``name`` with ``parameters`` (the others at their defaults): ``linear_rule("gamma",
    gamma=0.3)``. A parameter the rule does not take is refused, naming it."""
    cls = rule_class(name)
    known = [item.name for item in dataclasses.fields(cls)]
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        takes = f"takes {', '.join(known)}" if known else "takes no parameters"
        raise ValueError(f"{name} rule: unknown parameter {unknown[0]!r} ({name} {takes})")
    return cls(**parameters)


def rule_from_dict(values: Mapping[str, Any] | str) -> LinearLayerRule:
    """The rule ``{"name": ..., parameter: value, ...}`` describes (:meth:`LinearLayerRule.to_dict`);
    a bare name: that rule with its default parameters."""
    if isinstance(values, str):
        return linear_rule(values)
    if not isinstance(values, Mapping):
        raise ValueError(f"a linear rule must be an object with a 'name', got {type(values).__name__}")
    if "name" not in values:
        raise ValueError("a linear rule needs a 'name'")
    parameters = {k: v for k, v in values.items() if k != "name"}
    return linear_rule(values["name"], **parameters)


def as_linear_rule(rule: "LinearLayerRule | str") -> LinearLayerRule:
    """``rule`` itself, or the rule of that name with its default parameters."""
    if isinstance(rule, LinearLayerRule):
        return rule
    if isinstance(rule, str):
        return linear_rule(rule)
    raise ValueError(f"a linear rule must be a LinearLayerRule or a rule name, got {type(rule).__name__}")


def searchable_rules(signal: str = "gradient") -> Tuple[Type[LinearLayerRule], ...]:
    """The registered rules the tuning search may propose for composites of ``signal``: those with a
    ``search_grid``, in registration order."""
    return tuple(cls for cls in _RULES.values() if cls.search_grid is not None and signal in cls.signals)


# ------------------------------------------------------------------------------ the rules
def _stabilized(z: torch.Tensor, stabilizer: float) -> torch.Tensor:
    """``z + stabilizer * sign(z)`` with sign(0) = +1 (as zennit's stabilizer), in ``z``'s dtype
    (a Python float in ``torch.where`` would be rounded to float32 first)."""
    sign = (z >= 0).to(z.dtype).mul_(2).sub_(1)
    return z + sign.mul_(stabilizer)


def _split(weight: torch.Tensor, bias: Optional[torch.Tensor]):
    positive = (weight.clamp(min=0), None if bias is None else bias.clamp(min=0))
    negative = (weight.clamp(max=0), None if bias is None else bias.clamp(max=0))
    return positive, negative


@register_rule
@dataclass(frozen=True)
class Jacobian(LinearLayerRule):
    """The plain backward ``g W`` (the layer's Jacobian transposed); any signal."""

    name: ClassVar[str] = "jacobian"
    signals: ClassVar[Tuple[str, ...]] = SIGNALS
    keeps_output: ClassVar[bool] = False

    @property
    def is_gradient(self) -> bool:
        return True

    def signal(self, x, weight, bias, grad, output):
        return grad @ weight


@register_rule
@dataclass(frozen=True)
class Epsilon(LinearLayerRule):
    """Epsilon-LRP (Bach et al. 2015): ``R_i = sum_j x_i w_ji R_j / (z_j + epsilon sign(z_j))``,
    sign(0) = +1; the bias keeps its share. ``epsilon = 0`` is LRP-0: exactly the gradient."""

    name: ClassVar[str] = "epsilon"
    search_grid: ClassVar[Optional[Mapping[str, Tuple[float, ...]]]] = {"epsilon": (0.0, 0.01, 0.1, 1.0)}
    reads_input: ClassVar[bool] = False
    epsilon: float = 0.0

    @property
    def is_gradient(self) -> bool:
        return self.epsilon == 0

    def output_signal(self, grad, output):
        if self.epsilon == 0:
            return grad
        # y / (y + epsilon sign(y)) = |y| / (|y| + epsilon), bit for bit (sign(0) = +1): four
        # element-wise passes instead of eight
        magnitude = output.abs()
        return torch.mul(grad, magnitude).div_(magnitude.add_(self.epsilon))

    def signal(self, x, weight, bias, grad, output):
        return self.output_signal(grad, layer_output(x, weight, bias, output)) @ weight


@register_rule
@dataclass(frozen=True)
class Gamma(LinearLayerRule):
    """Generalised gamma rule (Montavon et al. 2019; Andeol et al. 2021; zennit's ``Gamma``).

    For an output ``y_j > 0`` the contributions of the same sign are favoured: the weights become
    ``W + gamma W+`` for positive inputs and ``W + gamma W-`` for negative ones (bias ``b + gamma
    b+``); for ``y_j < 0`` the other way round (bias ``b + gamma b-``); ``y_j = 0`` sends nothing.
    ``R_i = x_i sum_j w'_ji R_j / z'_j`` with ``z'_j`` the modified pre-activation, stabilized.
    ``gamma = 0`` is LRP-0 (the gradient) wherever ``y != 0``.
    """

    name: ClassVar[str] = "gamma"
    search_grid: ClassVar[Optional[Mapping[str, Tuple[float, ...]]]] = {"gamma": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)}
    gamma: float = 0.25
    stabilizer: float = 1e-7

    def signal(self, x, weight, bias, grad, output):
        # With W+ = (W + |W|) / 2 and W- = (W - |W|) / 2 (likewise for x), the contributions of
        # the same sign as y sum to P = (x W^T + |x| |W|^T) / 2, the others to x W^T - P; and the
        # four backward products s+ (W + g W+) + s- (W + g W-) (and swapped) are two:
        # (1 + g/2) S W +- (g/2) D |W| with S = s+ + s-, D = s+ - s- (s+, s- never both non-zero).
        # Three matrix products in all (the straightforward form: eight).
        y = layer_output(x, weight, bias, output)
        gamma, magnitude = self.gamma, weight.abs()
        absolute = F.linear(x.abs(), magnitude)                     # |x| |W|^T
        plain = y if bias is None else y - bias                     # x W^T
        positive_bias = 0.0 if bias is None else bias.clamp(min=0)
        negative_bias = 0.0 if bias is None else bias.clamp(max=0)
        z_up = y + gamma * ((plain + absolute) / 2 + positive_bias)  # y > 0: z + gamma (z+ share)
        z_down = y + gamma * ((plain - absolute) / 2 + negative_bias)  # y < 0: z + gamma (z- share)
        up = y > 0
        z = torch.where(up, z_up, z_down)
        s = torch.where(up | (y < 0), y * grad / _stabilized(z, self.stabilizer), 0.0)
        same_sign = (s.reshape(-1, s.shape[-1]) @ weight).mul_(1.0 + gamma / 2)
        difference = torch.where(up, s, -s).reshape(-1, s.shape[-1]) @ magnitude
        side = torch.where(x > 0, 1.0, -1.0).to(x.dtype).reshape(-1, x.shape[-1])
        return same_sign.addcmul_(side, difference, value=gamma / 2).view(x.shape)


def contribution_alpha_beta_signal(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                                   relevance: torch.Tensor, alpha: float, beta: float, stabilizer: float
                                   ) -> torch.Tensor:
    """Alpha-beta by the sign of each *contribution* ``x_i w_ji`` (Bach et al. 2015; zennit's
    ``AlphaBeta``): ``R_i / x_i`` for ``R_i = alpha sum_j c+_ij R_j / z+_j - beta sum_j c-_ij R_j /
    z-_j``, where ``c+`` are the positive contributions (``x+ W+``, ``x- W-``; positive bias part in
    ``z+``), ``c-`` the negative ones (``x+ W-``, ``x- W+``; negative bias part in ``z-``) and
    ``relevance [..., out]`` the output's relevance ``R_j``."""
    (w_pos, b_pos), (w_neg, b_neg) = _split(weight, bias)
    x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
    s_pos = relevance / _stabilized(F.linear(x_pos, w_pos, b_pos) + F.linear(x_neg, w_neg), stabilizer)
    through_pos = s_pos @ w_pos, s_pos @ w_neg  # for positive inputs, for negative inputs
    if beta == 0:
        return torch.where(x > 0, alpha * through_pos[0], alpha * through_pos[1])
    s_neg = relevance / _stabilized(F.linear(x_pos, w_neg, b_neg) + F.linear(x_neg, w_pos), stabilizer)
    return torch.where(x > 0, alpha * through_pos[0] - beta * (s_neg @ w_neg),
                       alpha * through_pos[1] - beta * (s_neg @ w_pos))


@register_rule
@dataclass(frozen=True)
class ZPlus(LinearLayerRule):
    """z+ (Montavon et al. 2017; zennit's ``ZPlus``): positive contributions only (``x+ W+``,
    ``x- W-`` and ``b+``): the contribution alpha-beta rule with alpha = 1, beta = 0."""

    name: ClassVar[str] = "zplus"
    search_grid: ClassVar[Optional[Mapping[str, Tuple[float, ...]]]] = {}
    stabilizer: float = 1e-7

    def signal(self, x, weight, bias, grad, output):
        relevance = layer_output(x, weight, bias, output) * grad
        return contribution_alpha_beta_signal(x, weight, bias, relevance, 1.0, 0.0, self.stabilizer)


@register_rule
@dataclass(frozen=True)
class ContributionAlphaBeta(LinearLayerRule):
    """Alpha-beta by the sign of each contribution (Bach et al. 2015; zennit's ``AlphaBeta``):
    positive contributions times ``alpha = 1 + beta``, negative ones times ``beta``."""

    name: ClassVar[str] = "contribution_alpha_beta"
    search_grid: ClassVar[Optional[Mapping[str, Tuple[float, ...]]]] = {"beta": (0.25, 0.5, 1.0, 2.0)}
    beta: float = 1.0
    stabilizer: float = 1e-7

    def signal(self, x, weight, bias, grad, output):
        relevance = layer_output(x, weight, bias, output) * grad
        return contribution_alpha_beta_signal(x, weight, bias, relevance, 1.0 + self.beta, self.beta,
                                              self.stabilizer)


def alpha_beta_relevance(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         relevance: torch.Tensor, alpha: float, stabilizer: float,
                         output: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Wu & Ong 2021's alpha-beta rule (relevance signal): ``x [batch, ..., in]``, output relevance
    ``[batch, ..., out]`` -> input relevance ``[batch, ..., in]``; ``output``: the layer's ``y = x W^T
    + b`` when the forward kept it (else recomputed).

    Positive and negative parts are split by the sign of the *weight* (and bias), not of
    ``x * w``; beta = 1 - alpha. The result is made non-negative and rescaled so that, per
    example, it sums to the output relevance's signed total (their ``rescale_lrp``).

    Three matrix products (the original code's four, less one): the positive pre-activation
    ``z+ = x W+^T + b+``; the negative one is ``y - z+`` (``W- = W - W+``, ``b- = b - b+``);
    ``alpha (R / z+) W+ + beta (R / z-) W-`` is one product accumulated onto the other (addmm).
    """
    beta = 1.0 - alpha
    w_pos = weight.clamp(min=0)
    z_pos = F.linear(x, w_pos, None if bias is None else bias.clamp(min=0))
    z_neg = torch.sub(layer_output(x, weight, bias, output), z_pos)
    s_pos = torch.div(relevance, z_pos.add_(stabilizer)).reshape(-1, relevance.shape[-1])
    s_neg = torch.div(relevance, z_neg.sub_(stabilizer)).reshape(-1, relevance.shape[-1])
    through_pos = torch.mm(s_pos, w_pos).mul_(alpha)
    input_relevance = torch.addmm(through_pos, s_neg, weight - w_pos, alpha=beta).view(x.shape).mul_(x).abs_()
    scale = (relevance.sum(-1, keepdim=True) + 1e-7) / (input_relevance.sum(-1, keepdim=True) + 1e-7)
    return input_relevance.mul_(scale)


@register_rule
@dataclass(frozen=True)
class AlphaBeta(LinearLayerRule):
    """Wu & Ong 2021's alpha-beta rule (BERT-LRP; relevance signal only): split by the sign of the
    *weight*, beta = 1 - alpha, |R| rescaled per example to the incoming total
    (:func:`alpha_beta_relevance`). Not zennit's AlphaBeta: that is :class:`ContributionAlphaBeta`."""

    name: ClassVar[str] = "alpha_beta"
    signals: ClassVar[Tuple[str, ...]] = ("relevance",)
    alpha: float = 0.5
    stabilizer: float = 1e-7

    def signal(self, x, weight, bias, grad, output):
        return alpha_beta_relevance(x, weight, bias, grad, self.alpha, self.stabilizer, output)


@register_rule
@dataclass(frozen=True)
class ScaledEpsilon(LinearLayerRule):
    """Epsilon-LRP with a norm-scaled stabilizer: ``epsilon`` times the root mean square of the
    layer's outputs ``z [..., out]`` at each position, so one value suits layers of any scale
    (``R_i = sum_j x_i w_ji R_j / (z_j + epsilon rms(z) sign(z_j))``)."""

    name: ClassVar[str] = "scaled_epsilon"
    epsilon: float = 0.01

    def signal(self, x, weight, bias, grad, output):
        y = layer_output(x, weight, bias, output)
        stabilizer = self.epsilon * y.pow(2).mean(-1, keepdim=True).sqrt()
        sign = (y >= 0).to(y.dtype).mul_(2).sub_(1)
        return (grad * y / (y + sign * stabilizer)) @ weight
