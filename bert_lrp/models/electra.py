"""ELECTRA (discriminator): BERT's layers after embeddings of ``embedding_size``, projected to
``hidden_size`` by ``embeddings_project`` when the two differ; no pooler; the sequence head is
dense + GELU + out_proj on the first token.

Shapes: ``[batch, seq]`` ids and masks, ``[batch, seq, hidden]`` hidden states; the embedding
output (``embedding_output=``, where attribution reads GS/GI/LRP) is the *projected* one, the
input of the first layer, as transformers' ``hidden_states[0]``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..rules import ops
from ..rules.composites import RuleSet
from .bert import (
    BertEmbeddings,
    BertModel,
    BertPreTrainedModel,
    _classifier_dropout,
    _finish,
    _reject_unknown,
    sequence_loss,
    token_loss,
)
from .config import ElectraConfig
from .outputs import SequenceClassifierOutput, TokenClassifierOutput
from .roberta import ClassificationHead, _with_labels


class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings of width ``embedding_size``."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config, size=config.embedding_size)


class ElectraModel(BertModel):
    """The ELECTRA encoder: :class:`ElectraEmbeddings`, ``embeddings_project`` if needed, BERT layers."""

    config_class = ElectraConfig
    embeddings_class = ElectraEmbeddings

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
            self._init_weights(self.embeddings_project)

    def combine_embeddings(self, word: torch.Tensor, position: torch.Tensor, token_type: torch.Tensor,
                           rules: Optional[RuleSet] = None) -> torch.Tensor:
        """Summands ``[batch, seq, embedding_size]`` -> embedding output ``[batch, seq, hidden]``."""
        embedded = self.embeddings.combine(word, position, token_type, rules=rules)
        if hasattr(self, "embeddings_project"):
            embedded = ops.linear(embedded, self.embeddings_project, rules)
        return embedded


class ElectraPreTrainedModel(BertPreTrainedModel):
    base_model_prefix = "electra"
    config_class = ElectraConfig


class ElectraForSequenceClassification(ElectraPreTrainedModel):
    """ELECTRA + :class:`~bert_lrp.models.roberta.ClassificationHead` (GELU). Logits ``[batch, num_labels]``."""

    def __init__(self, config: ElectraConfig, num_labels: Optional[int] = None) -> None:
        config = _with_labels(config, num_labels)
        super().__init__(config)
        self.num_labels = config.num_labels
        self.electra = ElectraModel(config)
        self.classifier = ClassificationHead(config, "gelu")
        self.init_weights()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                return_dict=True, *, embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        _reject_unknown(unused)
        encoded = self.electra(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output=embedding_output, rules=rules)
        logits = self.classifier(encoded.last_hidden_state, rules)
        loss = None if labels is None else sequence_loss(self.config.problem_type, logits, labels)
        return _finish(SequenceClassifierOutput(loss, logits, encoded.hidden_states, encoded.attentions), return_dict)


class ElectraForTokenClassification(ElectraPreTrainedModel):
    """ELECTRA + dropout + linear classifier on every token. Logits ``[batch, seq, num_labels]``."""

    def __init__(self, config: ElectraConfig, num_labels: Optional[int] = None) -> None:
        config = _with_labels(config, num_labels)
        super().__init__(config)
        self.num_labels = config.num_labels
        self.electra = ElectraModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=False, output_hidden_states=False,
                return_dict=True, *, embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        _reject_unknown(unused)
        encoded = self.electra(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output=embedding_output, rules=rules)
        logits = ops.linear(ops.dropout(encoded.last_hidden_state, self.dropout), self.classifier, rules)
        loss = None if labels is None else token_loss(logits, labels)
        return _finish(TokenClassifierOutput(loss, logits, encoded.hidden_states, encoded.attentions), return_dict)
