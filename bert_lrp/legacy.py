"""The original BERT-LRP calling convention, so its notebooks port with few changes.

``model = BertForSequenceClassification(config, num_labels, init_lrp=True)``; after a forward
pass, ``model.backward_gradient(grads)``, ``model.backward_gradient_input(grads)`` and
``model.backward_lrp(relevance)`` take a ``[batch, num_labels]`` tensor at the logits and return
``[batch, seq, hidden]`` at the embedding output; ``backward_lat(input_ids, attention_probs)``
traces attention from [CLS]. Unlike the original, nothing is kept in global dicts: the model keeps
only the inputs of its last forward call and re-runs one forward + one backward with the rules.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from .attention_maps import layerwise_attention_tracing
from .composites import GRADIENT, Composite, RuleSet, get_composite
from .rules import _safe_divide


class LegacyAttributionMixin:
    """Adds BERT-LRP's ``backward_*`` methods to a sequence classifier."""

    _last_inputs: Optional[dict] = None

    def _remember_inputs(self, input_ids, attention_mask, token_type_ids) -> None:
        if getattr(self, "init_lrp", False) and input_ids is not None:
            self._last_inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                                 "token_type_ids": token_type_ids}

    def _backward_from_logits(self, output_weights: torch.Tensor, composite: Composite, as_relevance: bool
                              ) -> tuple:
        if self._last_inputs is None:
            raise RuntimeError("call the model on a batch first (constructed with init_lrp=True)")
        inputs = self._last_inputs
        rules = RuleSet.of([composite])
        with torch.enable_grad():
            embedded = self.bert.embeddings(inputs["input_ids"], inputs["token_type_ids"], rules=rules)
            embedded = embedded.detach().requires_grad_(True)
            logits = self(attention_mask=inputs["attention_mask"], embedding_output=embedded, rules=rules).logits
            if output_weights.shape != logits.shape:
                raise ValueError(f"expected a [batch, num_labels] tensor of shape {list(logits.shape)}, "
                                 f"got {list(output_weights.shape)}")
            weights = _safe_divide(output_weights.to(logits.dtype), logits.detach()) if as_relevance else output_weights
            (gradient,) = torch.autograd.grad(logits, embedded, grad_outputs=weights.to(logits.dtype))
        return embedded.detach(), gradient

    def backward_gradient(self, sensitivity_grads: torch.Tensor) -> torch.Tensor:
        """Gradient at the embedding output for ``grad_outputs = sensitivity_grads``."""
        return self._backward_from_logits(sensitivity_grads, GRADIENT, as_relevance=False)[1]

    def backward_gradient_input(self, sensitivity_grads: torch.Tensor) -> torch.Tensor:
        embedded, gradient = self._backward_from_logits(sensitivity_grads, GRADIENT, as_relevance=False)
        return embedded * gradient

    def backward_lrp(self, relevance_score: torch.Tensor, rule: Union[str, Composite] = "bert-lrp") -> torch.Tensor:
        """Relevance ``[batch, num_labels]`` at the logits -> ``[batch, seq, hidden]`` at the embedding output."""
        embedded, gradient = self._backward_from_logits(relevance_score, get_composite(rule), as_relevance=True)
        return embedded * gradient

    @staticmethod
    def backward_lat(input_ids: torch.Tensor, attention_probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """LAT from [CLS] through every layer and head: ``[batch, seq]``."""
        start = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        return layerwise_attention_tracing(list(attention_probs), start)
