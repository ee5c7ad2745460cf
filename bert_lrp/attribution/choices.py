"""Explaining a multiple-choice score: ``explain`` on a ``<Family>ForMultipleChoice``.

The model encodes each choice of ``[batch, choices, seq]`` inputs on its own and scores it; the
logits ``[batch, choices]`` are those scores side by side. The explained output is the chosen
choice's logit (``target``: a choice index, one per example, or None: the predicted choice).
That logit reads its own choice's tokens only, so the relevance of every other choice is exactly 0
(as transformers' input gradient of it): the chosen choices are explained as a batch of one-logit
sequence classifiers (the model's ``single_choice_scorer()``, its own Parameters) by any method, and
put back in place. Per-token fields gain a choice axis after the batch axis (scores ``[batch,
choices, seq]``, relevance ``[batch, choices, seq, hidden]``, zero outside the chosen choice);
``logits`` are ``[batch, choices]``, ``target`` the chosen choice ``[batch]``, ``target_logit``
its logit ``[batch]``; ``attentions`` are those of the chosen choices' pass.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict

import torch
from torch import nn

from . import method_scores
from .targets import Target, resolve_target

MULTIPLE_CHOICE = "multiple_choice"


def choice_inputs(batch: Any) -> Dict[str, torch.Tensor]:
    """``input_ids [batch, choices, seq]`` with ``attention_mask`` (default ones) and
    ``token_type_ids`` (default zeros) of the same shape."""
    ids = batch["input_ids"] if "input_ids" in batch else None
    if ids is None or ids.dim() != 3:
        shape = None if ids is None else list(ids.shape)
        raise ValueError(f"explaining a multiple-choice model needs input_ids of shape [batch, choices, seq], "
                         f"got {shape}")
    mask = batch.get("attention_mask")
    types = batch.get("token_type_ids")
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids) if mask is None else mask,
              "token_type_ids": torch.zeros_like(ids) if types is None else types}
    for name, tensor in inputs.items():
        if tensor.shape != ids.shape:
            raise ValueError(f"{name} has shape {list(tensor.shape)}, expected {list(ids.shape)} "
                             "(the shape of input_ids)")
    return inputs


def explain_choices(model: nn.Module, batch: Any, target: Target,
                    explain_rows: Callable[[nn.Module, Dict[str, torch.Tensor], int], Any]):
    """The explanation of each example's chosen choice (see the module docstring).
    ``explain_rows(scorer, inputs [n, seq], 0)`` explains class 0 of the one-logit ``scorer``."""
    if isinstance(target, str):
        raise ValueError(f"target={target!r}: a multiple-choice model is explained for one choice per example "
                         "(target: a choice index, a list of them, or None for the predicted choice)")
    inputs = choice_inputs(batch)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(**inputs).logits  # [batch, choices]
    finally:
        model.train(was_training)
    chosen, _ = resolve_target(model, "sequence", logits, target)  # [batch] choice indices
    rows = torch.arange(logits.shape[0], device=logits.device)
    result = explain_rows(model.single_choice_scorer(), {k: v[rows, chosen] for k, v in inputs.items()}, 0)
    choices = logits.shape[1]

    def spread(tensor: torch.Tensor) -> torch.Tensor:  # [batch, ...] -> [batch, choices, ...], zero elsewhere
        placed = tensor.new_zeros((tensor.shape[0], choices, *tensor.shape[1:]))
        placed[rows, chosen] = tensor
        return placed

    fields = {spec.name: method_scores.map_tree(getattr(result, spec.name), spread) if spec.per_token
              else getattr(result, spec.name) for spec in method_scores.FIELDS}
    return replace(result, logits=logits, target=chosen, target_position=None,
                   attention_mask=inputs["attention_mask"], tokens=None, encoding=None, **fields)
