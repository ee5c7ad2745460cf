"""The original BERT-LRP calling convention, so its notebooks port with few changes.

``model = BertForSequenceClassification(config, num_labels, init_lrp=True)`` (or
``BertForSequenceClassification.from_pretrained(folder, init_lrp=True)``); after a forward pass,
``model.backward_gradient(grads)``, ``model.backward_gradient_input(grads)`` and
``model.backward_lrp(relevance)`` take a ``[batch, num_labels]`` tensor at the logits and return
``[batch, seq, hidden]`` at the embedding output; ``backward_lat(input_ids, attention_probs)``
traces attention from [CLS]. Unlike the original, nothing is kept in global dicts: the model keeps
only the inputs of its last forward call and re-runs one forward + one backward with the rules.

The calls live in :class:`LegacyLRPCalls`, a mixin built on the rules alone
(:mod:`bert_lrp.rules`), so that the models never import the attribution package;
``models/bert.py`` combines it with ``BertForSequenceClassification``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ..rules.composites import GRADIENT, Composite, RuleSet, get_composite
from ..rules.functions import stack_copies
from ..rules.tracing import layerwise_attention_tracing
from .sites import linear_sites


class LegacyLRPCalls:
    """BERT-LRP's ``backward_*`` calls for a BERT sequence classifier (``self.bert``); they
    explain the inputs of the model's last plain forward call."""

    _last_inputs: Optional[dict] = None
    init_lrp = True

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, *args, **kwargs):
        if kwargs.get("rules") is None and input_ids is not None:
            self._last_inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                                 "token_type_ids": token_type_ids}
        return super().forward(input_ids, attention_mask, token_type_ids, *args, **kwargs)

    def _backward_from_logits(self, at_logits: torch.Tensor, composite: Composite):
        """Run the last inputs again under ``composite`` and send ``at_logits`` ``[batch, labels]``
        back: a gradient (gradient signal) or relevance (relevance signal). Returns the signal
        that reaches the embedding output, ``[batch, seq, hidden]``, and the embedding output."""
        if self._last_inputs is None:
            raise RuntimeError("call the model on a batch first (constructed with init_lrp=True)")
        inputs = self._last_inputs
        rules = RuleSet.of([composite], sites=linear_sites(self) if composite.per_layer else None)
        copies = rules.copies
        stack = lambda t: None if t is None else stack_copies(t, copies)  # noqa: E731
        with torch.enable_grad():
            embedded = self.bert.embeddings(stack(inputs["input_ids"]), stack(inputs["token_type_ids"]), rules=rules)
            embedded = embedded.detach().requires_grad_(True)
            logits = self(attention_mask=stack(inputs["attention_mask"]), embedding_output=embedded, rules=rules).logits
            size = logits.shape[0] // copies
            if at_logits.shape != logits[:size].shape:
                raise ValueError(f"expected a [batch, num_labels] tensor of shape {list(logits[:size].shape)}, "
                                 f"got {list(at_logits.shape)}")
            # a weighted sum, not grad_outputs=: that argument makes torch import sympy (~2 s) on first use
            (signal,) = torch.autograd.grad((logits * stack(at_logits.to(logits.dtype))).sum(), embedded)
        return signal[:size], embedded[:size].detach()

    def backward_gradient(self, sensitivity_grads: torch.Tensor) -> torch.Tensor:
        """Gradient at the embedding output for ``grad_outputs = sensitivity_grads``."""
        return self._backward_from_logits(sensitivity_grads, GRADIENT)[0]

    def backward_gradient_input(self, sensitivity_grads: torch.Tensor) -> torch.Tensor:
        gradient, embedded = self._backward_from_logits(sensitivity_grads, GRADIENT)
        return embedded * gradient

    def backward_lrp(self, relevance_score: torch.Tensor, rule: Union[str, Composite] = "bert-lrp") -> torch.Tensor:
        """Relevance ``[batch, num_labels]`` at the logits -> ``[batch, seq, hidden]`` at the
        embedding output. The default ``bert-lrp`` preset is the original code's algorithm."""
        composite = get_composite(rule)
        if composite.signal == "relevance":
            return self._backward_from_logits(relevance_score, composite)[0]
        # gradient signal: relevance R at a logit z starts the backward as R / z
        if self._last_inputs is None:
            raise RuntimeError("call the model on a batch first (constructed with init_lrp=True)")
        logits = self(**self._last_inputs).logits.detach()
        stuck = (logits == 0) & (relevance_score != 0)
        if bool(stuck.any()):
            row, label = stuck.nonzero()[0].tolist()
            raise ValueError(f"relevance at logit [{row}, {label}] which is exactly 0: the {composite.name!r} preset "
                             f"propagates a gradient (relevance = logit x gradient) and cannot start there; "
                             f"use rule='bert-lrp', whose signal is the relevance itself")
        zero = logits == 0
        weights = relevance_score.to(logits.dtype) / torch.where(zero, torch.ones_like(logits), logits)
        signal, embedded = self._backward_from_logits(torch.where(zero, torch.zeros_like(weights), weights), composite)
        return composite.relevance_at(embedded, signal)

    @staticmethod
    def backward_lat(input_ids: torch.Tensor, attention_probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """LAT from [CLS] through every layer and head: ``[batch, seq]``."""
        start = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        return layerwise_attention_tracing(list(attention_probs), start)
