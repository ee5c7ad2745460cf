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

Stacked batches: to get several methods from one backward pass, the batch holds ``n`` identical
copies of the inputs, one per method (``modes`` has one entry per copy, along dim 0). Because the
copies are identical, each Function computes its forward on the first copy only and repeats the
result, and saves one copy for the backward; the backward applies each copy's rule to its slice
of the gradient. The forward therefore costs about one pass whatever the number of methods.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

Modes = Tuple[str, ...]


# ------------------------------------------------------------------------------- helpers
def _first_copy(x: torch.Tensor, modes: Modes) -> torch.Tensor:
    return x if len(modes) == 1 else x[: x.shape[0] // len(modes)]


def _repeat(y: torch.Tensor, modes: Modes) -> torch.Tensor:
    return y if len(modes) == 1 else y.repeat(len(modes), *([1] * (y.dim() - 1)))


def _by_slice(grad: torch.Tensor, modes: Modes, rule: Callable[[torch.Tensor, str], torch.Tensor]) -> torch.Tensor:
    """Apply ``rule(grad_slice, mode)`` to each copy's slice of the gradient and re-join."""
    if len(modes) == 1:
        return rule(grad, modes[0])
    return torch.cat([rule(part, mode) for part, mode in zip(grad.chunk(len(modes)), modes)], dim=0)


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, and 0 where the denominator is exactly 0."""
    zero = denominator == 0
    return torch.where(zero, torch.zeros_like(numerator), numerator / torch.where(zero, torch.ones_like(denominator), denominator))


def _check(kind: str, mode: str, known: Tuple[str, ...]) -> None:
    if mode not in known:
        raise ValueError(f"unknown {kind} rule {mode!r}; choose from {', '.join(known)}")


# -------------------------------------------------------------------------------- linear
class LinearRule(torch.autograd.Function):
    """``y = x @ W.T + b`` for ``x [..., in]``, ``W [out, in]``."""

    @staticmethod
    def forward(ctx, x, weight, bias, modes: Modes, epsilon: float, alpha: float):
        for mode in modes:
            _check("linear", mode, ("gradient", "epsilon", "alpha_beta"))
        x0 = _first_copy(x, modes)
        # the plain gradient w.r.t. x needs only W: keep x for the other rules or weight gradients
        keep_input = weight.requires_grad or any(mode != "gradient" for mode in modes)
        ctx.save_for_backward(x0 if keep_input else None, weight, bias)
        ctx.modes, ctx.epsilon, ctx.alpha = modes, epsilon, alpha
        return _repeat(F.linear(x0, weight, bias), modes)

    @staticmethod
    def backward(ctx, grad):
        x0, weight, bias = ctx.saved_tensors

        def rule(g: torch.Tensor, mode: str) -> torch.Tensor:
            if mode == "gradient":
                return g @ weight
            if mode == "epsilon":
                z = F.linear(x0, weight, bias)
                return (g * z / (z + ctx.epsilon * torch.where(z >= 0, 1.0, -1.0))) @ weight
            return _alpha_beta_gradient(x0, weight, bias, g, ctx.alpha)

        grad_x = None
        if ctx.needs_input_grad[0]:
            same_gradient = all(mode == "gradient" for mode in ctx.modes)
            grad_x = grad @ weight if same_gradient else _by_slice(grad, ctx.modes, rule)  # one matmul for all copies
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            x = _repeat(x0, ctx.modes)
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


# ---------------------------------------------------------------------------- layer norm
class LayerNormRule(torch.autograd.Function):
    """LayerNorm over the last dim: ``y = (x - mean) / sqrt(var + eps) * w + b``."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, modes: Modes):
        for mode in modes:
            _check("layer_norm", mode, ("gradient", "constant_std"))
        x0 = _first_copy(x, modes)
        y, mean, inv_std = torch.native_layer_norm(x0, (x0.shape[-1],), weight, bias, eps)
        keep_input = weight.requires_grad or "gradient" in modes  # constant_std needs only 1/std
        ctx.save_for_backward(x0 if keep_input else None, mean, inv_std, weight)
        ctx.modes = modes
        return _repeat(y, modes)

    @staticmethod
    def backward(ctx, grad):
        x0, mean, inv_std, weight = ctx.saved_tensors
        def rule(g: torch.Tensor, mode: str) -> torch.Tensor:
            if mode == "gradient":  # aten's fused kernel, as plain autograd would use
                grad_input, _, _ = torch.ops.aten.native_layer_norm_backward(
                    g.contiguous(), x0, (x0.shape[-1],), mean, inv_std, weight, None, [True, False, False])
                return grad_input
            gw = g * weight
            return (gw - gw.mean(-1, keepdim=True)) * inv_std

        grad_x = _by_slice(grad, ctx.modes, rule) if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = (grad * _repeat((x0 - mean) * inv_std, ctx.modes)).reshape(-1, grad.shape[-1]).sum(0)
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


def _identity_ratio(name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``f(x) / x`` (the identity rule's gradient), in closed form where one exists."""
    if name == "gelu":
        return torch.special.ndtr(x)  # gelu(x) = x * Phi(x)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))
    if name == "relu":
        return (x > 0).to(x.dtype)
    if name in ("silu", "swish"):
        return torch.sigmoid(x)
    return _safe_divide(y, x)


class ActivationRule(torch.autograd.Function):
    """Element-wise non-linearity (GELU in the FFN, tanh in the pooler)."""

    @staticmethod
    def forward(ctx, x, name: str, modes: Modes):
        for mode in modes:
            _check("activation", mode, ("gradient", "identity"))
        x0 = _first_copy(x, modes)
        y0 = activation_forward(name, x0)
        # save only what the backward needs: y/x for the identity rule, x for the gradient
        ratio = _identity_ratio(name, x0, y0) if "identity" in modes else None
        ctx.save_for_backward(x0 if "gradient" in modes else None, ratio)
        ctx.name, ctx.modes = name, modes
        return _repeat(y0, modes)

    @staticmethod
    def backward(ctx, grad):
        x0, ratio = ctx.saved_tensors

        def rule(g: torch.Tensor, mode: str) -> torch.Tensor:
            if mode == "identity":
                return g * ratio
            if ctx.name == "gelu":  # aten's fused kernels, as plain autograd would use
                return torch.ops.aten.gelu_backward(g, x0.expand_as(g), approximate="none")
            if ctx.name in ("gelu_new", "gelu_pytorch_tanh"):
                return torch.ops.aten.gelu_backward(g, x0.expand_as(g), approximate="tanh")
            return g * _derivative(ctx.name, x0)

        return _by_slice(grad, ctx.modes, rule), None, None


# ----------------------------------------------------------------------------- attention
def softmax_rule(probabilities: torch.Tensor, grad: torch.Tensor, mode: str) -> torch.Tensor:
    """Softmax backward over the last dim: the Taylor rule, which equals the gradient
    ``p * (g - sum(g * p))`` (aten's fused kernel), or ``constant`` (no relevance)."""
    if mode == "constant":
        return torch.zeros_like(grad)
    return torch._softmax_backward_data(grad, probabilities, -1, probabilities.dtype)


def bilinear_share(mode: str) -> float:
    """Fraction of a bilinear product's gradient each factor receives (uniform rule: 1/2)."""
    return 0.5 if mode == "uniform" else 1.0


class AttentionRule(torch.autograd.Function):
    """Scaled dot-product attention as one Function: ``softmax(Q K^T * scale + mask) @ V``.

    ``query``/``key``/``value``: ``[batch, heads, seq, head_size]``; ``mask``: additive, broadcast
    to ``[batch, heads, seq, seq]``. The forward runs the fused kernel and saves only Q, K, V (as
    the fused kernel's own backward does); the backward recomputes the probabilities and applies
    the ``bilinear`` rule to both products and the ``softmax`` rule between them. Returns the
    context and, if ``with_probabilities``, the probabilities (not differentiable).
    """

    @staticmethod
    def forward(ctx, query, key, value, mask, softmax_modes: Modes, bilinear_modes: Modes, with_probabilities: bool):
        for mode in softmax_modes:
            _check("softmax", mode, ("gradient", "constant"))
        for mode in bilinear_modes:
            _check("bilinear", mode, ("gradient", "uniform"))
        q, k, v = (_first_copy(t, softmax_modes) for t in (query, key, value))
        m = None if mask is None else _first_copy(mask, softmax_modes)
        # softmax rule = gradient for every copy: the fused kernel's own backward applies it
        ctx.fused = all(mode == "gradient" for mode in softmax_modes) and q.device.type == "cpu"
        if ctx.fused:
            context, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False,
                                                                                            attn_mask=m)
            ctx.save_for_backward(q, k, v, m, context, logsumexp)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
            ctx.save_for_backward(q, k, v, m)
        ctx.softmax_modes, ctx.bilinear_modes = softmax_modes, bilinear_modes
        probabilities = _repeat(attention_probabilities(q, k, m), softmax_modes) if with_probabilities else None
        if probabilities is not None:
            ctx.mark_non_differentiable(probabilities)
        return _repeat(context, softmax_modes), probabilities

    @staticmethod
    def backward(ctx, grad_context, _grad_probabilities):
        if ctx.fused:
            return AttentionRule._fused_backward(ctx, grad_context)
        q, k, v, m = ctx.saved_tensors
        probabilities = attention_probabilities(q, k, m)
        scale = 1.0 / math.sqrt(q.shape[-1])
        grads_q, grads_k, grads_v = [], [], []
        n = len(ctx.softmax_modes)
        for g, softmax_mode, bilinear_mode in zip(grad_context.chunk(n), ctx.softmax_modes, ctx.bilinear_modes):
            share = bilinear_share(bilinear_mode)
            g = g * share if share != 1.0 else g
            grads_v.append(probabilities.transpose(-1, -2) @ g)
            if softmax_mode == "constant":
                grads_q.append(torch.zeros_like(q))
                grads_k.append(torch.zeros_like(k))
                continue
            grad_scores = softmax_rule(probabilities, g @ v.transpose(-1, -2), softmax_mode)
            factor = scale * share  # applied to the small [.., seq, head_size] results
            grads_q.append((grad_scores @ k) * factor)
            grads_k.append((grad_scores.transpose(-1, -2) @ q) * factor)
        join = (lambda parts: parts[0]) if n == 1 else (lambda parts: torch.cat(parts, 0))
        return join(grads_q), join(grads_k), join(grads_v), None, None, None, None


    @staticmethod
    def _fused_backward(ctx, grad_context):
        """Softmax rule = gradient: aten's fused backward on the gradient times the share of
        A @ V; Q and K, behind Q K^T, take the share once more."""
        q, k, v, m, context, logsumexp = ctx.saved_tensors
        parts = []
        for g, mode in zip(grad_context.chunk(len(ctx.bilinear_modes)), ctx.bilinear_modes):
            share = bilinear_share(mode)
            g = g * share if share != 1.0 else g
            grad_q, grad_k, grad_v = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                g.contiguous(), q, k, v, context, logsumexp, 0.0, False, attn_mask=m)
            if share != 1.0:
                grad_q, grad_k = grad_q * share, grad_k * share
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


# -------------------------------------------------------------------------------- source
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
