"""The private ATen kernels the rules use where a rule equals the plain gradient, each beside a
public-API fallback that computes the same thing.

The fused kernels (``native_layer_norm`` and its backward, ``gelu_backward``, ``_softmax_backward_data``
and the CPU flash-attention forward/backward) are what plain autograd itself runs, so a rule that
equals the gradient costs what the gradient costs. They are not public API: if a torch release
drops or changes one, the fallback is used (checked once, at import), and
``with portable_kernels():`` forces the fallbacks (tests compare both paths).
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Iterator, Optional, Tuple

import torch

_FORCE_PORTABLE = contextvars.ContextVar("bert_lrp_portable_kernels", default=False)
_ATEN = torch.ops.aten
HAS_FUSED = all(hasattr(_ATEN, name) for name in (
    "native_layer_norm_backward", "gelu_backward", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward")) and all(
    hasattr(torch, name) for name in ("_softmax_backward_data", "native_layer_norm"))


@contextlib.contextmanager
def portable_kernels() -> Iterator[None]:
    """Within this block every rule uses the public-API fallbacks."""
    token = _FORCE_PORTABLE.set(True)
    try:
        yield
    finally:
        _FORCE_PORTABLE.reset(token)


def fused() -> bool:
    return HAS_FUSED and not _FORCE_PORTABLE.get()


def layer_norm_forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], eps: float
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LayerNorm over the last dim -> ``(y, mean, 1/std)``, statistics ``[..., 1]``."""
    if fused():
        return torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)
    mean = x.mean(-1, keepdim=True)
    inv_std = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    y = (x - mean) * inv_std * weight + (0 if bias is None else bias)
    return y, mean, inv_std


def layer_norm_backward(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, inv_std: torch.Tensor,
                        weight: torch.Tensor) -> torch.Tensor:
    """Gradient of LayerNorm w.r.t. its input (the full Jacobian)."""
    if fused():
        grad_input, _, _ = _ATEN.native_layer_norm_backward(
            grad.contiguous(), x, (x.shape[-1],), mean, inv_std, weight, None, [True, False, False])
        return grad_input
    normalized = (x - mean) * inv_std
    gw = grad * weight
    return inv_std * (gw - gw.mean(-1, keepdim=True) - normalized * (gw * normalized).mean(-1, keepdim=True))


def gelu_backward(grad: torch.Tensor, x: torch.Tensor, approximate: str) -> torch.Tensor:
    """Gradient of GELU (``approximate`` ``none``: the erf form; ``tanh``)."""
    if fused():
        return _ATEN.gelu_backward(grad, x.expand_as(grad), approximate=approximate)
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))
        tanh = torch.tanh(inner)
        derivative = 0.5 * (1 + tanh) + 0.5 * x * (1 - tanh.pow(2)) * math.sqrt(2.0 / math.pi) * (1 + 3 * 0.044715 * x.pow(2))
    else:
        derivative = torch.special.ndtr(x) + x * torch.exp(-0.5 * x.pow(2)) / math.sqrt(2.0 * math.pi)
    return grad * derivative


def softmax_backward(grad: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Gradient of a softmax over the last dim: ``p * (g - sum(g * p))``."""
    if fused():
        return torch._softmax_backward_data(grad, probabilities, -1, probabilities.dtype)
    return probabilities * (grad - (grad * probabilities).sum(-1, keepdim=True))


def flash_attention_forward(q, k, v, mask) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``(context, logsumexp)`` from the fused CPU kernel, or None where it is not to be used."""
    if not fused() or q.device.type != "cpu":
        return None
    return _ATEN._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=mask)


def flash_attention_backward(grad, q, k, v, mask, context, logsumexp):
    """Gradients w.r.t. Q, K, V of the fused CPU kernel (used only after its forward)."""
    return _ATEN._scaled_dot_product_flash_attention_for_cpu_backward(
        grad.contiguous(), q, k, v, context, logsumexp, 0.0, False, attn_mask=mask)
