"""Relevance carried through attention probabilities alone: layerwise attention tracing (LAT)
and attention rollout. Pure functions of the attention probabilities; the registered methods
(:mod:`bert_lrp.attribution.attention`) and the original BERT-LRP calls (:mod:`bert_lrp.models.legacy`)
use them.

``attentions`` is a sequence with one ``[batch, heads, seq, seq]`` tensor per layer (row = query,
column = key); ``start`` is ``[batch]``, the query position the explanation starts from ([CLS]
for sequence classification, the explained token for token classification).
"""
from __future__ import annotations

from typing import Sequence

import torch


def _start_rows(attention: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Row ``start[b]`` of every head: ``[batch, heads, seq]``."""
    batch, heads, seq, _ = attention.shape
    index = start.view(batch, 1, 1, 1).expand(batch, heads, 1, seq)
    return attention.gather(2, index).squeeze(2)


def layerwise_attention_tracing(attentions: Sequence[torch.Tensor], start: torch.Tensor) -> torch.Tensor:
    """LAT (Wu, Nguyen & Ong 2020): per head, the attention row of ``start`` in the last layer is
    carried back through every earlier layer's attention of the same head (no residual term);
    the heads are then summed. Returns ``[batch, seq]``."""
    if not attentions:
        raise ValueError("LAT needs the attention probabilities of at least one layer")
    trace = _start_rows(attentions[-1], start)  # [batch, heads, seq]
    for attention in reversed(attentions[:-1]):
        trace = (trace.unsqueeze(2) @ attention).squeeze(2)
    return trace.sum(1)


def attention_rollout(attentions: Sequence[torch.Tensor], start: torch.Tensor,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Rollout (Abnar & Zuidema 2020): average heads, add the residual identity, renormalise rows,
    multiply the layers; the row of ``start``. Returns ``[batch, seq]``."""
    if not attentions:
        raise ValueError("rollout needs the attention probabilities of at least one layer")
    batch, _, seq, _ = attentions[0].shape
    identity = torch.eye(seq, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout = None
    for attention in attentions:
        mixed = attention.mean(1) + identity
        if attention_mask is not None:  # padded keys get no weight, not even from the identity
            mixed = mixed * attention_mask[:, None, :].to(mixed.dtype)
        mixed = mixed / mixed.sum(-1, keepdim=True).clamp_min(1e-12)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout.gather(1, start.view(batch, 1, 1).expand(batch, 1, seq)).squeeze(1)
