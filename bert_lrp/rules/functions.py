"""Relevance rules: one ``torch.autograd.Function`` per operation of BERT.

Every Function computes the ordinary forward; its backward applies, to the signal coming back,
the rule each stacked copy's composite chooses (see :mod:`bert_lrp.rules.composites` for the rules,
their names in the literature, and the two signal conventions).

Stacked batches: to get several methods from one backward pass, the batch holds ``n`` identical
copies of the inputs, one per composite copy (``slices`` has one entry per copy, along dim 0).
Because the copies are identical, each Function computes its forward on the first copy only and
repeats the result (a batch of one: an expanded view, nothing copied), and saves one copy for the
backward; the backward applies each copy's rule to its slice of the signal. The forward therefore
costs about one pass whatever the number of methods.

One backward per copy: under a :class:`~bert_lrp.rules.composites.RuleSet` with
``separate_backward``, the batch holds the inputs once (no copies, nothing repeated, nothing
joined); the graph is walked once per copy and each Function's backward applies the rules of the
copy the RuleSet names as ``active`` for that walk. ``slices`` is then the RuleSet itself.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from . import kernels
from .linear import alpha_beta_relevance  # noqa: F401 (Wu & Ong's rule, also used on its own)

if TYPE_CHECKING:
    from .composites import Composite, RuleSet
    from .linear import LinearLayerRule

Slices = Union[Tuple["Composite", ...], "RuleSet"]  # the copies' composites, or a RuleSet


# ------------------------------------------------------------------------------- helpers
def _composites(slices: Slices) -> Tuple["Composite", ...]:
    return slices if isinstance(slices, tuple) else slices.slices


def _stacked(slices: Slices) -> int:
    """How many copies the batch holds along dim 0 (1 under one backward per copy)."""
    return len(slices) if isinstance(slices, tuple) else slices.copies


def _copy_parts(grad: torch.Tensor, slices: Slices) -> List[Tuple[torch.Tensor, int]]:
    """``(signal, copy index)`` for each copy the running backward carries: every slice of a
    stacked batch, or the active copy of a one-backward-per-copy RuleSet."""
    if not isinstance(slices, tuple) and slices.separate_backward:
        return [(grad, slices.active[0])]
    copies = len(_composites(slices))
    if copies == 1:
        return [(grad, 0)]
    return list(zip(grad.chunk(copies), range(copies)))


def _signal_parts(grad: torch.Tensor, slices: Slices) -> List[Tuple[torch.Tensor, "Composite"]]:
    """``(signal, composite)`` for each copy the running backward carries (see :func:`_copy_parts`)."""
    composites = _composites(slices)
    return [(part, composites[i]) for part, i in _copy_parts(grad, slices)]


def _join(parts: List[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def first_copy(x: torch.Tensor, copies: int) -> torch.Tensor:
    """The first of ``copies`` copies of a stacked ``x [copies * batch, ...]``: ``[batch, ...]``.

    A batch of one comes back with ordinary strides even when ``x`` is an expanded view
    (:func:`stack_copies`): a size-1 dim of stride 0 is not handed to a kernel (torch 2.13's CPU
    GELU, first called on such a tensor, stays about 100x slower for the rest of the process)."""
    if copies == 1:
        return x
    size = x.shape[0] // copies
    return x[0].unsqueeze(0) if size == 1 else x[:size]


def _first_copy(x: torch.Tensor, slices: Slices) -> torch.Tensor:
    return first_copy(x, _stacked(slices))


def stack_copies(tensor: torch.Tensor, copies: int) -> torch.Tensor:
    """``copies`` copies of ``tensor [batch, ...]`` along dim 0 (a stacked batch): ``[copies * batch, ...]``.

    A batch of one becomes an expanded view (stride 0 along dim 0, nothing copied): the copies are
    equal, every rule Function reads the first alone, and the signals coming back are whole tensors.
    A view is never written to in place (nothing in the models does; read-only)."""
    if copies == 1:
        return tensor
    if tensor.dim() > 0 and tensor.shape[0] == 1:
        return tensor.expand(copies, *tensor.shape[1:])
    return tensor.repeat(copies, *([1] * (tensor.dim() - 1)))


def _repeat(y: torch.Tensor, slices: Slices) -> torch.Tensor:
    return stack_copies(y, _stacked(slices))


def _by_slice(grad: torch.Tensor, slices: Slices, rule: Callable[[torch.Tensor, "Composite"], torch.Tensor]
              ) -> torch.Tensor:
    """Apply ``rule(signal_slice, composite)`` to each copy's slice of the signal and re-join."""
    return _join([rule(part, c) for part, c in _signal_parts(grad, slices)])


# -------------------------------------------------------------------------------- linear
class LinearRule(torch.autograd.Function):
    """``y = x @ W.T + b`` for ``x [..., in]``, ``W [out, in]``; ``rules`` holds each stacked
    copy's :class:`~bert_lrp.rules.linear.LinearLayerRule` for this layer."""

    @staticmethod
    def forward(ctx, x, weight, bias, rules: Tuple["LinearLayerRule", ...], active: Optional[List[int]] = None):
        # active: one backward per copy (the batch holds the inputs once; the backward applies rules[active[0]])
        copies = 1 if active is not None else len(rules)
        x0 = first_copy(x, copies)
        y0 = F.linear(x0, weight, bias)
        plain = all(r.is_gradient for r in rules)
        # the plain gradient w.r.t. x needs only W: keep x for the other rules or weight gradients,
        # and the output for the rules that divide by it (not recomputed in the backward)
        keep_input = weight.requires_grad or not plain
        keep_output = not plain and any(r.keeps_output and not r.is_gradient for r in rules)
        ctx.save_for_backward(x0 if keep_input else None, weight, bias, y0 if keep_output else None)
        ctx.rules, ctx.plain, ctx.active = rules, plain, active
        return stack_copies(y0, copies)

    @staticmethod
    def backward(ctx, grad):
        x0, weight, bias, y0 = ctx.saved_tensors
        rules = ctx.rules
        grad_x = None
        if ctx.needs_input_grad[0]:
            if ctx.plain:
                grad_x = grad @ weight  # one matmul for all copies
            elif ctx.active is not None:
                grad_x = linear_signal(x0, weight, bias, grad, rules[ctx.active[0]], y0)
            else:
                parts = grad.chunk(len(rules)) if len(rules) > 1 else (grad,)
                grad_x = torch.cat([linear_signal(x0, weight, bias, g, r, y0) for g, r in zip(parts, rules)], 0)
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            x = stack_copies(x0, 1 if ctx.active is not None else len(rules))
            grad_w = grad.reshape(-1, grad.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        if bias is not None and ctx.needs_input_grad[2]:
            grad_b = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_w, grad_b, None, None


def linear_signal(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], grad: torch.Tensor,
                  rule: "LinearLayerRule", output: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The signal ``[..., in]`` a linear layer ``y = x W^T + b`` (``x [..., in]``, ``W [out,
    in]``) sends back under ``rule`` from the signal ``grad [..., out]`` at its output (the plain
    ``grad @ W`` for a rule that is the gradient). ``output``: ``y`` when the forward kept it."""
    if rule.is_gradient:
        return grad @ weight
    return rule.signal(x, weight, bias, grad, output)


# ---------------------------------------------------------------------------- layer norm
class LayerNormRule(torch.autograd.Function):
    """LayerNorm over the last dim: ``y = (x - mean) / sqrt(var + eps) * w + b``."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, slices: Slices):
        x0 = _first_copy(x, slices)
        y, mean, inv_std = kernels.layer_norm_forward(x0, weight, bias, eps)
        jacobian = any(c.layer_norm == "jacobian" for c in _composites(slices))
        keep_input = weight.requires_grad or jacobian  # detach_std needs only 1/std
        ctx.save_for_backward(x0 if keep_input else None, mean, inv_std, weight)
        ctx.slices = slices
        return _repeat(y, slices)

    @staticmethod
    def backward(ctx, grad):
        x0, mean, inv_std, weight = ctx.saved_tensors

        def rule(g: torch.Tensor, c: "Composite") -> torch.Tensor:
            if c.layer_norm == "jacobian":
                return kernels.layer_norm_backward(g, x0, mean, inv_std, weight)
            gw = g * weight  # detach_std: centring and scaling with a constant 1/std (in place: gw is new)
            return gw.sub_(gw.mean(-1, keepdim=True)).mul_(inv_std)

        grad_x = _by_slice(grad, ctx.slices, rule) if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = (grad * _repeat((x0 - mean) * inv_std, ctx.slices)).reshape(-1, grad.shape[-1]).sum(0)
        if ctx.needs_input_grad[2]:
            grad_b = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_w, grad_b, None, None


# --------------------------------------------------------------------------- activations
def activation_forward(name: str, x: torch.Tensor) -> torch.Tensor:
    """The plain activation (the same functions transformers uses for BERT)."""
    if name == "gelu":
        return F.gelu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return F.gelu(x, approximate="tanh")
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu":
        return F.relu(x)
    if name in ("silu", "swish"):
        return F.silu(x)
    raise ValueError(f"unknown activation {name!r}")


def _derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    """Derivative of activation ``name`` at ``x`` (GELU's comes from aten's fused backward)."""
    if name == "tanh":
        return 1.0 - torch.tanh(x).pow(2)
    if name == "relu":
        return (x > 0).to(x.dtype)
    if name in ("silu", "swish"):
        s = torch.sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    raise ValueError(f"unknown activation {name!r}")


# f(x) / x at x = 0 (its limit), where the division below gives 0 / 0
_RATIO_AT_ZERO = {"gelu": 0.5, "gelu_new": 0.5, "gelu_pytorch_tanh": 0.5, "silu": 0.5, "swish": 0.5, "tanh": 1.0}


def _identity_ratio(name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``f(x) / x`` (the identity rule's gradient, so that ``x * ratio * g = f(x) * g`` exactly).

    One division of the forward's own output (not a closed form such as GELU's ``Phi(x)``:
    ``torch.special.ndtr`` is an unvectorised kernel, measured 17x slower than ``gelu`` itself on
    CPU); ``0 / 0`` at ``x = 0`` becomes the limit of ``f(x) / x`` there.
    """
    if name == "relu":
        return (x > 0).to(x.dtype)
    if name not in _RATIO_AT_ZERO:
        raise ValueError(f"unknown activation {name!r}")
    return torch.div(y, x).nan_to_num_(nan=_RATIO_AT_ZERO[name])


class ActivationRule(torch.autograd.Function):
    """Element-wise non-linearity (GELU in the FFN, tanh in the pooler)."""

    @staticmethod
    def forward(ctx, x, name: str, slices: Slices):
        x0 = _first_copy(x, slices)
        y0 = activation_forward(name, x0)
        # save only what the backward needs: y/x for the identity rule, x for the Jacobian
        identity_ratio = any(c.activation == "identity" and c.signal == "gradient" for c in _composites(slices))
        ratio = _identity_ratio(name, x0, y0) if identity_ratio else None
        jacobian = any(c.activation == "jacobian" for c in _composites(slices))
        ctx.save_for_backward(x0 if jacobian else None, ratio)
        ctx.name, ctx.slices = name, slices
        return _repeat(y0, slices)

    @staticmethod
    def backward(ctx, grad):
        x0, ratio = ctx.saved_tensors

        def rule(g: torch.Tensor, c: "Composite") -> torch.Tensor:
            if c.activation == "identity":  # R_in = R_out
                return g if c.signal == "relevance" else g * ratio
            if ctx.name == "gelu":
                return kernels.gelu_backward(g, x0, approximate="none")
            if ctx.name in ("gelu_new", "gelu_pytorch_tanh"):
                return kernels.gelu_backward(g, x0, approximate="tanh")
            return g * _derivative(ctx.name, x0)

        return _by_slice(grad, ctx.slices, rule), None, None


# ----------------------------------------------------------------------------- attention
def softmax_rule(probabilities: torch.Tensor, grad: torch.Tensor, rule: str) -> torch.Tensor:
    """Softmax backward over the last dim: ``jacobian`` / ``taylor`` (the same computation,
    ``p * (g - sum(g * p))``, aten's fused kernel) or ``detach`` (no signal)."""
    if rule == "detach":
        return torch.zeros_like(grad)
    return kernels.softmax_backward(grad, probabilities)


def attention_shares(composite) -> Tuple[float, float, float]:
    """``(to V, to A, to Q and to K)``: the shares of A @ V's signal its factors get (``value_share``
    and the rest when set, else the bilinear rule's) and the share of Q K^T's each factor gets (the
    composite's own rules; a layer's: ``composite.attention_rules(layer)``)."""
    rules = composite.attention_rules(None)
    return rules.to_value, rules.to_weights, rules.to_query_key


class AttentionRule(torch.autograd.Function):
    """Scaled dot-product attention as one Function: ``softmax(Q K^T * scale + mask) @ V``.

    ``query``/``key``/``value``: ``[batch, heads, seq, head_size]``; ``mask``: additive, broadcast
    to ``[batch, heads, seq, seq]``. The forward runs the fused kernel and saves only Q, K, V (as
    the fused kernel's own backward does); the backward recomputes the probabilities and applies
    each copy's rules of this layer (``layer_rules``: one
    :class:`~bert_lrp.rules.composites.AttentionRules` per copy; None: each composite's own): the
    shares of both products and the ``softmax`` rule between them. Returns the context and, if
    ``with_probabilities``, the probabilities (not differentiable).
    """

    @staticmethod
    def forward(ctx, query, key, value, mask, slices: Slices, with_probabilities: bool, layer_rules=None):
        q, k, v = (_first_copy(t, slices) for t in (query, key, value))
        m = None if mask is None else _first_copy(mask, slices)
        if layer_rules is None:
            layer_rules = tuple(c.attention_rules(None) for c in _composites(slices))
        # a copy whose softmax rule is its Jacobian: the fused kernel's own backward applies it (and
        # gives a detached softmax's copies their V signal, P^T g, too); all detached: no Q, K signal at all
        fused = (kernels.flash_attention_forward(q, k, v, m) if any(r.softmax != "detach" for r in layer_rules)
                 else None)
        ctx.fused = fused is not None
        if ctx.fused:
            context, logsumexp = fused
            ctx.save_for_backward(q, k, v, m, context, logsumexp)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
            ctx.save_for_backward(q, k, v, m)
        ctx.slices, ctx.layer_rules = slices, layer_rules
        probabilities = _repeat(attention_probabilities(q, k, m), slices) if with_probabilities else None
        if probabilities is not None:
            ctx.mark_non_differentiable(probabilities)
        return _repeat(context, slices), probabilities

    @staticmethod
    def backward(ctx, grad_context, _grad_probabilities):
        if ctx.fused:
            return AttentionRule._fused_backward(ctx, grad_context)
        q, k, v, m = ctx.saved_tensors
        probabilities = attention_probabilities(q, k, m)
        scale = 1.0 / math.sqrt(q.shape[-1])
        grads_q, grads_k, grads_v = [], [], []
        parts = _copy_parts(grad_context, ctx.slices)
        for g, i in parts:
            rules = ctx.layer_rules[i]
            to_v, to_a, share = rules.to_value, rules.to_weights, rules.to_query_key
            grads_v.append(probabilities.transpose(-1, -2) @ (g * to_v if to_v != 1.0 else g))
            if rules.softmax == "detach":
                grads_q.append(torch.zeros_like(q))
                grads_k.append(torch.zeros_like(k))
                continue
            g = g * to_a if to_a != 1.0 else g
            grad_scores = softmax_rule(probabilities, g @ v.transpose(-1, -2), rules.softmax)
            factor = scale * share  # applied to the small [.., seq, head_size] results
            grads_q.append((grad_scores @ k) * factor)
            grads_k.append((grad_scores.transpose(-1, -2) @ q) * factor)
        # every copy detached: no signal to Q and K at all, so their layers' backwards never run
        if all(ctx.layer_rules[i].softmax == "detach" for _, i in parts):
            return None, None, _join(grads_v), None, None, None, None
        return _join(grads_q), _join(grads_k), _join(grads_v), None, None, None, None

    @staticmethod
    def _fused_backward(ctx, grad_context):
        """Softmax rule = its Jacobian: aten's fused backward on the signal times the share of
        A @ V; Q and K, behind Q K^T, take the share once more. A copy whose softmax is detached
        keeps the V signal ``P^T g`` alone."""
        q, k, v, m, context, logsumexp = ctx.saved_tensors
        signals = _copy_parts(grad_context, ctx.slices)
        if len(signals) == 1 and ctx.layer_rules[signals[0][1]].softmax == "detach":  # a detached copy's walk: V alone
            g, i = signals[0]
            grad_v = attention_probabilities(q, k, m).transpose(-1, -2) @ g
            to_v = ctx.layer_rules[i].to_value
            return None, None, grad_v.mul_(to_v) if to_v != 1.0 else grad_v, None, None, None, None
        parts = []
        for g, i in signals:
            rules = ctx.layer_rules[i]
            to_v, to_a, share = rules.to_value, rules.to_weights, rules.to_query_key
            first = to_v if to_v == to_a else 1.0  # one factor on the signal when both sides take the same
            g = g * first if first != 1.0 else g
            grad_q, grad_k, grad_v = kernels.flash_attention_backward(g, q, k, v, m, context, logsumexp)
            if to_v / first != 1.0:  # the kernel's outputs are new tensors: scale in place
                grad_v = grad_v.mul_(to_v / first)
            if rules.softmax == "detach":
                grad_q, grad_k = torch.zeros_like(q), torch.zeros_like(k)
            elif to_a / first * share != 1.0:
                grad_q, grad_k = grad_q.mul_(to_a / first * share), grad_k.mul_(to_a / first * share)
            parts.append((grad_q, grad_k, grad_v))
        if len(parts) == 1:
            return (*parts[0], None, None, None, None)
        return (*(torch.cat(grads, 0) for grads in zip(*parts)), None, None, None, None)


def attention_probabilities(q: torch.Tensor, k: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``softmax(q k^T / sqrt(head_size) + mask)``: ``[batch, heads, seq, seq]``."""
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores + mask
    return torch.softmax(scores, dim=-1)


# ------------------------------------------------------------------- residual paths
class _PathIdentity(torch.autograd.Function):
    """Identity on ``x [copies * batch, ...]``; subclasses mix the copies' signals in the backward
    (``paired``: the slice index of each composite whose Jacobian path is the next slice)."""

    @staticmethod
    def forward(ctx, x, slices: Slices, paired: Tuple[int, ...]):
        ctx.slices, ctx.paired = slices, paired
        return x.view_as(x)


class BranchInput(_PathIdentity):
    """Identity at the input of a residual block's branch (the sub-layer beside the skip).

    For a composite with ``residual='block_jacobian'`` (slice ``i``, its Jacobian path at
    ``i + 1``) the backward gives both copies the sum of what the branch sent them: the branch
    under the composite's rules plus the branch's plain Jacobian. With the skip connection's own
    share, that is BERT-LRP's residual rule. Other slices pass unchanged.
    """

    @staticmethod
    def backward(ctx, grad):
        parts = list(grad.chunk(len(ctx.slices)))
        for i in ctx.paired:
            parts[i] = parts[i + 1] = parts[i] + parts[i + 1]
        return torch.cat(parts, 0), None, None


class JacobianPathSource(_PathIdentity):
    """Identity at the encoder's output; backward: each Jacobian path starts from the signal of
    the composite it belongs to (the heads above the encoder use that composite's rules)."""

    @staticmethod
    def backward(ctx, grad):
        parts = list(grad.chunk(len(ctx.slices)))
        for i in ctx.paired:
            parts[i + 1] = parts[i]
        return torch.cat(parts, 0), None, None
