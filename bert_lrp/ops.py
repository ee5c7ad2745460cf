"""The operations BERT is built from: a plain fast path, or the rule Functions under a RuleSet."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .composites import RuleSet
from .rules import (ActivationRule, BilinearRule, LayerNormRule, LinearRule, SoftmaxRule,
                    activation_forward)


def linear(x: torch.Tensor, layer: nn.Linear, rules: Optional[RuleSet]) -> torch.Tensor:
    if rules is None:
        return F.linear(x, layer.weight, layer.bias)
    return LinearRule.apply(x, layer.weight, layer.bias, rules.modes("linear"), rules.epsilon, rules.alpha)


def layer_norm(x: torch.Tensor, layer: nn.LayerNorm, rules: Optional[RuleSet]) -> torch.Tensor:
    if rules is None:
        return F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
    return LayerNormRule.apply(x, layer.weight, layer.bias, layer.eps, rules.modes("layer_norm"))


def activation(x: torch.Tensor, name: str, rules: Optional[RuleSet]) -> torch.Tensor:
    if rules is None:
        return activation_forward(name, x)
    return ActivationRule.apply(x, name, rules.modes("activation"))


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Optional[torch.Tensor],
              dropout: float, need_probabilities: bool, rules: Optional[RuleSet]
              ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Scaled dot-product attention.

    ``query``, ``key``, ``value``: ``[batch, heads, seq, head_size]``; ``mask``: additive,
    broadcastable to ``[batch, heads, seq, seq]``. Returns the context ``[batch, heads, seq,
    head_size]`` and, if asked or under rules, the probabilities ``[batch, heads, seq, seq]``.
    """
    if rules is None and not need_probabilities:
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout)
        return context, None
    scale = 1.0 / math.sqrt(query.shape[-1])
    if rules is None:
        scores = query @ key.transpose(-1, -2)
    else:
        scores = BilinearRule.apply(query, key.transpose(-1, -2), rules.modes("bilinear"))
    scores = scores * scale
    if mask is not None:
        scores = scores + mask
    if rules is None:
        probabilities = torch.softmax(scores, dim=-1)
        weights = F.dropout(probabilities, dropout) if dropout > 0 else probabilities
        return weights @ value, probabilities
    probabilities = SoftmaxRule.apply(scores, rules.modes("softmax"))
    return BilinearRule.apply(probabilities, value, rules.modes("bilinear")), probabilities
