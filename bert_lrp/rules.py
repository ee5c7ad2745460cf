"""Relevance rules: one ``torch.autograd.Function`` per operation of BERT.

Convention (gradient x input): the relevance of a tensor ``x`` is ``x * g`` where ``g`` is the
*modified* gradient that reaches ``x``. Every Function below computes the ordinary forward; its
backward returns the gradient prescribed by a rule *mode*:

- ``linear``:      ``gradient`` (the epsilon rule with eps -> 0 is exactly the gradient in this
                   formulation), ``epsilon`` (stabilised: R_j = z_j g_j / (z_j + eps sign z_j)),
                   ``alpha_beta`` (the original BERT-LRP rule, split by weight sign, |R| rescaled
                   per token to the incoming total).
- ``layer_norm``:  ``gradient`` or ``constant_std`` (the normaliser is a constant: LN is linear).
- ``activation``:  ``gradient`` or ``identity`` (R_in = R_out: g_in = g_out * f(x) / x).
- ``softmax``:     ``gradient`` (grad x input is the first-order Taylor rule of AttnLRP) or
                   ``constant`` (the attention probabilities pass no relevance, CP-LRP).
- ``bilinear``:    ``gradient`` or ``uniform`` (each operand of a @ b gets half the relevance).

A batch may be stacked from several slices of equal size, one mode per slice (``modes`` is a
tuple with one entry per slice along dim 0): that is how one backward pass yields the plain
gradient (for GS and GI) and LRP together.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

Modes = Tuple[str, ...]


def _by_slice(grad: torch.Tensor, modes: Modes, rule: Callable[[torch.Tensor, str, slice], torch.Tensor]) -> torch.Tensor:
    """Apply ``rule(grad_slice, mode, rows)`` to each slice of the stacked batch and re-join."""
    if len(modes) == 1 or len(set(modes)) == 1:
        return rule(grad, modes[0], slice(None))
    size = grad.shape[0] // len(modes)
    parts = [rule(grad[i * size:(i + 1) * size], mode, slice(i * size, (i + 1) * size))
             for i, mode in enumerate(modes)]
    return torch.cat(parts, dim=0)


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, and 0 where the denominator is exactly 0."""
    zero = denominator == 0
    return torch.where(zero, torch.zeros_like(numerator), numerator / torch.where(zero, torch.ones_like(denominator), denominator))


class LinearRule(torch.autograd.Function):
    """``y = x @ W.T + b`` for ``x [..., in]``, ``W [out, in]``."""

    @staticmethod
    def forward(ctx, x, weight, bias, modes: Modes, epsilon: float, alpha: float):
        ctx.save_for_backward(x, weight, bias)
        ctx.modes, ctx.epsilon, ctx.alpha = modes, epsilon, alpha
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors

        def rule(g: torch.Tensor, mode: str, rows: slice) -> torch.Tensor:
            if mode == "gradient":
                return g @ weight
            xs = x[rows]
            if mode == "epsilon":
                z = F.linear(xs, weight, bias)
                stabilised = z + ctx.epsilon * torch.where(z >= 0, 1.0, -1.0)
                return (g * z / stabilised) @ weight
            if mode == "alpha_beta":
                return _alpha_beta_gradient(xs, weight, bias, g, ctx.alpha)
            raise ValueError(f"unknown linear rule {mode!r}")

        grad_x = _by_slice(grad, ctx.modes, rule) if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = grad.reshape(-1, grad.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        if bias is not None and ctx.needs_input_grad[2]:
            grad_b = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_w, grad_b, None, None, None


def _alpha_beta_gradient(x, weight, bias, g, alpha: float, eps: float = 1e-7) -> torch.Tensor:
    """Original BERT-LRP alpha-beta rule (beta = 1 - alpha, split by the sign of the weight).

    The input relevance is made non-negative and rescaled so that, per token, it sums to the
    output relevance; the returned gradient reproduces it as ``x * gradient``.
    """
    beta = 1.0 - alpha
    relevance = g * F.linear(x, weight, bias)
    w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
    b_pos = bias.clamp(min=0) if bias is not None else None
    b_neg = bias.clamp(max=0) if bias is not None else None
    c_pos = (relevance / (F.linear(x, w_pos, b_pos) + eps)) @ w_pos
    c_neg = (relevance / (F.linear(x, w_neg, b_neg) - eps)) @ w_neg
    contribution = (alpha * c_pos + beta * c_neg).abs()
    input_relevance = (x * contribution).abs()
    scale = (relevance.sum(-1, keepdim=True) + eps) / (input_relevance.sum(-1, keepdim=True) + eps)
    return torch.sign(x) * contribution * scale


class LayerNormRule(torch.autograd.Function):
    """LayerNorm over the last dim: ``y = (x - mean) / sqrt(var + eps) * w + b``."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, modes: Modes):
        mean = x.mean(-1, keepdim=True)
        centred = x - mean
        inv_std = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
        normalised = centred * inv_std
        ctx.save_for_backward(normalised, inv_std, weight)
        ctx.modes = modes
        return torch.addcmul(bias, normalised, weight)

    @staticmethod
    def backward(ctx, grad):
        normalised, inv_std, weight = ctx.saved_tensors

        def rule(g: torch.Tensor, mode: str, rows: slice) -> torch.Tensor:
            gw = g * weight
            centred = gw - gw.mean(-1, keepdim=True)
            if mode == "constant_std":
                return centred * inv_std[rows]
            if mode == "gradient":
                xhat = normalised[rows]
                return (centred - xhat * (gw * xhat).mean(-1, keepdim=True)) * inv_std[rows]
            raise ValueError(f"unknown layer_norm rule {mode!r}")

        grad_x = _by_slice(grad, ctx.modes, rule) if ctx.needs_input_grad[0] else None
        grad_w = (grad * normalised).reshape(-1, grad.shape[-1]).sum(0) if ctx.needs_input_grad[1] else None
        grad_b = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _derivative(name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Derivative of activation ``name`` at ``x`` (``y = f(x)``), written out (no autograd)."""
    if name == "gelu":
        return 0.5 * (1.0 + torch.erf(x * _SQRT_HALF)) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        k = math.sqrt(2.0 / math.pi)
        inner = k * (x + 0.044715 * x.pow(3))
        t = torch.tanh(inner)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x * x)
    if name == "tanh":
        return 1.0 - y * y
    if name == "relu":
        return (x > 0).to(x.dtype)
    if name in ("silu", "swish"):
        s = torch.sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    raise ValueError(f"unknown activation {name!r}")


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


class ActivationRule(torch.autograd.Function):
    """Element-wise non-linearity (GELU in the FFN, tanh in the pooler)."""

    @staticmethod
    def forward(ctx, x, name: str, modes: Modes):
        y = activation_forward(name, x)
        ctx.save_for_backward(x, y)
        ctx.name, ctx.modes = name, modes
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors

        def rule(g: torch.Tensor, mode: str, rows: slice) -> torch.Tensor:
            if mode == "identity":
                return g * _safe_divide(y[rows], x[rows])
            if mode == "gradient":
                return g * _derivative(ctx.name, x[rows], y[rows])
            raise ValueError(f"unknown activation rule {mode!r}")

        return _by_slice(grad, ctx.modes, rule), None, None


class SoftmaxRule(torch.autograd.Function):
    """Softmax over the last dim (attention scores ``[batch, heads, query, key]``)."""

    @staticmethod
    def forward(ctx, scores, modes: Modes):
        probabilities = torch.softmax(scores, dim=-1)
        ctx.save_for_backward(probabilities)
        ctx.modes = modes
        return probabilities

    @staticmethod
    def backward(ctx, grad):
        (probabilities,) = ctx.saved_tensors

        def rule(g: torch.Tensor, mode: str, rows: slice) -> torch.Tensor:
            if mode == "constant":
                return torch.zeros_like(g)
            if mode == "gradient":
                p = probabilities[rows]
                return p * (g - (g * p).sum(-1, keepdim=True))
            raise ValueError(f"unknown softmax rule {mode!r}")

        return _by_slice(grad, ctx.modes, rule), None


class BilinearRule(torch.autograd.Function):
    """Matrix product of two activations, ``a @ b`` (Q @ K^T and A @ V)."""

    @staticmethod
    def forward(ctx, a, b, modes: Modes):
        ctx.save_for_backward(a, b)
        ctx.modes = modes
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors

        def factor(mode: str) -> float:
            if mode not in ("gradient", "uniform"):
                raise ValueError(f"unknown bilinear rule {mode!r}")
            return 0.5 if mode == "uniform" else 1.0

        def scaled(g: torch.Tensor, mode: str, rows: slice) -> torch.Tensor:
            f = factor(mode)
            return g * f if f != 1.0 else g

        g = _by_slice(grad, ctx.modes, scaled)
        grad_a = g @ b.transpose(-1, -2) if ctx.needs_input_grad[0] else None
        grad_b = a.transpose(-1, -2) @ g if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


class BackwardCounter:
    """Counts the passes through the model's output: forwards, and backwards (relevance entering the graph)."""

    def __init__(self) -> None:
        self.forward_passes = 0
        self.backward_passes = 0


class RelevanceSource(torch.autograd.Function):
    """Identity on the model output; its backward counts the passes (for tests and audits)."""

    @staticmethod
    def forward(ctx, logits, counter: Optional[BackwardCounter]):
        ctx.counter = counter
        if counter is not None:
            counter.forward_passes += 1
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, grad):
        if ctx.counter is not None:
            ctx.counter.backward_passes += 1
        return grad, None
