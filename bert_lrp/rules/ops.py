"""The operations BERT is built from: a plain fast path, or the rule Functions under a RuleSet.

Under a RuleSet of one copy whose rule for an operation is that operation's plain backward (the
gradient composite everywhere; LRP-0 on linear layers), the plain path runs: native autograd
computes the same signal without a Python Function per call.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .composites import RuleSet
from .functions import (
    ActivationRule,
    AttentionRule,
    BranchInput,
    JacobianPathSource,
    LayerNormRule,
    LinearRule,
    activation_forward,
    attention_probabilities,
)


def dropout(x: torch.Tensor, layer: nn.Dropout) -> torch.Tensor:
    """Dropout in training, nothing at all in evaluation (relevance passes unchanged)."""
    return layer(x) if layer.training and layer.p > 0 else x


def linear(x: torch.Tensor, layer: nn.Linear, rules: Optional[RuleSet]) -> torch.Tensor:
    """``x @ W^T + b``; under rules, each copy's rule for this layer (by its site: kind and layer).

    A module that wraps the layer (an adapter such as PEFT's LoRA) runs its own forward; under
    rules it is refused (the rules would see the base weight alone): merge the adapter first."""
    adapted = isinstance(layer, nn.Module) and type(layer) is not nn.Linear
    if rules is None or rules.runs_plain("linear"):
        return layer(x) if adapted else F.linear(x, layer.weight, layer.bias)
    if adapted:
        raise TypeError(f"{type(layer).__name__} wraps a linear layer (an adapter): attribution rules need plain "
                        "nn.Linear layers; merge the adapter into the weights first (PEFT: merge_and_unload())")
    layer_rules = rules.linear_rules(layer)
    if len(layer_rules) == 1 and not layer_rules[0].reads_input and not layer.weight.requires_grad:
        return _output_signal_linear(x, layer, layer_rules[0])
    return LinearRule.apply(x, layer.weight, layer.bias, layer_rules, rules.active if rules.separate_backward else None)


def _output_signal_linear(x: torch.Tensor, layer: nn.Linear, rule) -> torch.Tensor:
    """The native linear layer, its output's signal changed by ``rule.output_signal`` (epsilon):
    the same backward as :class:`LinearRule`, with no Python Function and no saved input."""
    y = F.linear(x, layer.weight, layer.bias)
    if y.requires_grad:
        output = y.detach()
        # no signal at all (None: e.g. Q and K under a detached softmax): nothing to change
        y.register_hook(lambda grad: None if grad is None else rule.output_signal(grad, output))
    return y


def layer_norm(x: torch.Tensor, layer: nn.LayerNorm, rules: Optional[RuleSet]) -> torch.Tensor:
    if rules is None or rules.runs_plain("layer_norm"):
        return F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
    return LayerNormRule.apply(x, layer.weight, layer.bias, layer.eps, rules)


def activation(x: torch.Tensor, name: str, rules: Optional[RuleSet]) -> torch.Tensor:
    if rules is None or rules.runs_plain("activation"):
        return activation_forward(name, x)
    return ActivationRule.apply(x, name, rules)


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Optional[torch.Tensor],
              dropout: float, need_probabilities: bool, rules: Optional[RuleSet],
              query_layer: Optional[nn.Module] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Scaled dot-product attention.

    ``query``, ``key``, ``value``: ``[batch, heads, seq, head_size]``; ``mask``: additive,
    broadcastable to ``[batch, heads, seq, seq]``. Returns the context ``[batch, heads, seq,
    head_size]`` and, if asked, the probabilities ``[batch, heads, seq, seq]``. Under rules, one
    :class:`AttentionRule` applies each copy's softmax rule and shares of this layer (found by
    ``query_layer``, the layer's query projection, whose site names the layer; None: the
    composites' own rules); a layer whose rules are all the plain backward runs the plain path
    (attribution runs in eval mode, without dropout).
    """
    if rules is not None:
        layer_rules = rules.attention_rules(query_layer)
        if not rules.runs_plain_attention(layer_rules):
            return AttentionRule.apply(query, key, value, mask, rules, need_probabilities, layer_rules)
    if not need_probabilities:
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout)
        return context, None
    probabilities = attention_probabilities(query, key, mask)
    weights = F.dropout(probabilities, dropout) if dropout > 0 else probabilities
    return weights @ value, probabilities


def branch_input(x: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
    """``x [batch, seq, hidden]`` as it enters a residual block's branch (the skip takes ``x``
    itself): where composites with BERT-LRP's residual rule meet their Jacobian paths."""
    if rules is None or not rules.paired:
        return x
    return BranchInput.apply(x, rules.slices, rules.paired)


def encoder_output(x: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
    """The encoder's last hidden state ``[batch, seq, hidden]``: where Jacobian paths start."""
    if rules is None or not rules.paired:
        return x
    return JacobianPathSource.apply(x, rules.slices, rules.paired)
