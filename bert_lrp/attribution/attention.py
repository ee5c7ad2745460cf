"""Attribution read from attention probabilities: layerwise attention tracing (LAT) and rollout,
registered as methods (the tracing itself: :mod:`bert_lrp.rules.tracing`)."""
from __future__ import annotations

import torch

from ..rules.tracing import attention_rollout, layerwise_attention_tracing
from .registry import Method, MethodContext, MethodResult, register

__all__ = ["attention_rollout", "layerwise_attention_tracing"]


def _start(context: MethodContext) -> torch.Tensor:
    return context.target_position if context.target_position is not None else torch.zeros_like(context.target)


def _lat(context: MethodContext) -> MethodResult:
    return MethodResult(layerwise_attention_tracing(context.attentions, _start(context)))


def _rollout(context: MethodContext) -> MethodResult:
    return MethodResult(attention_rollout(context.attentions, _start(context), context.inputs["attention_mask"]))


register(Method("lat", "LAT", needs_attentions=True, passes="1 forward", run=_lat, color="#9467bd",
                summary="layerwise attention tracing (Wu, Nguyen & Ong 2020)"))
register(Method("rollout", "rollout", needs_attentions=True, passes="1 forward", run=_rollout, color="#8c564b",
                summary="attention rollout (Abnar & Zuidema 2020)"))
