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
    ChoiceScorer,
    SpanClassifier,
    TokenClassifier,
    with_labels,
)
from .config import ConfigError, ElectraConfig
from .outputs import BaseModelOutputWithPooling
from .roberta import FirstTokenClassifier


class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings of width ``embedding_size``."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config, size=config.embedding_size)


class ElectraModel(BertModel):
    """The ELECTRA encoder: :class:`ElectraEmbeddings`, ``embeddings_project`` if needed, BERT layers."""

    config_class = ElectraConfig
    embeddings_class = ElectraEmbeddings

    def __init__(self, config: ElectraConfig) -> None:
        config = with_labels(config)
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


class ElectraForSequenceClassification(FirstTokenClassifier, ElectraPreTrainedModel):
    """ELECTRA + :class:`~bert_lrp.models.roberta.ClassificationHead` (GELU). Logits ``[batch, num_labels]``."""

    task = "sequence"  # what explain() explains: see attribution/targets.py

    encoder_class = ElectraModel
    classifier_activation = "gelu"


class ElectraForTokenClassification(TokenClassifier, ElectraPreTrainedModel):
    """ELECTRA + dropout + linear classifier on every token. Logits ``[batch, seq, num_labels]``."""

    task = "token"  # what explain() explains: see attribution/targets.py

    encoder_class = ElectraModel


class ElectraForQuestionAnswering(SpanClassifier, ElectraPreTrainedModel):
    """ELECTRA + ``qa_outputs``: start and end logits of the answer span, ``[batch, seq]`` each."""

    encoder_class = ElectraModel


class ElectraSequenceSummary(nn.Module):
    """ELECTRA's summary of a sequence as its multiple-choice head reads the config
    (``summary_type`` "first", ``summary_use_proj``, ``summary_proj_to_labels``,
    ``summary_activation``, ``summary_first_dropout``, ``summary_last_dropout``; transformers'
    defaults when absent): first token, dropout, ``summary`` linear, activation, dropout.
    ``hidden [batch, seq, hidden]`` -> ``[batch, hidden]`` (``[batch, num_labels]`` when projected to labels)."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        kind = getattr(config, "summary_type", "first")
        if kind != "first":
            raise ConfigError(f"config field summary_type must be 'first' for ELECTRA's multiple choice, got {kind!r}")
        if not getattr(config, "summary_use_proj", True):
            raise ConfigError("config field summary_use_proj must be true for ELECTRA's multiple choice, got False")
        to_labels = getattr(config, "summary_proj_to_labels", False) and config.num_labels > 0
        self.summary = nn.Linear(config.hidden_size, config.num_labels if to_labels else config.hidden_size)
        self.activation = getattr(config, "summary_activation", "gelu")
        self.first_dropout = nn.Dropout(getattr(config, "summary_first_dropout", 0.0) or 0.0)
        self.last_dropout = nn.Dropout(getattr(config, "summary_last_dropout", 0.1) or 0.0)

    def forward(self, hidden: torch.Tensor, rules: Optional[RuleSet] = None) -> torch.Tensor:
        summary = ops.linear(ops.dropout(hidden[:, 0], self.first_dropout), self.summary, rules)
        if self.activation:
            summary = ops.activation(summary, self.activation, rules)
        return ops.dropout(summary, self.last_dropout)


class ElectraForMultipleChoice(ChoiceScorer, ElectraPreTrainedModel):
    """ELECTRA + :class:`ElectraSequenceSummary` + linear scorer of each choice. Inputs ``[batch,
    choices, seq]``; logits ``[batch, choices]``. ``explain`` explains the chosen choice's logit."""

    def __init__(self, config: ElectraConfig) -> None:
        config = with_labels(config)
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.sequence_summary = ElectraSequenceSummary(config)
        self.classifier = nn.Linear(self.sequence_summary.summary.out_features, 1)
        self.init_weights()

    def _choice_scores(self, encoded: BaseModelOutputWithPooling, rules: Optional[RuleSet] = None) -> torch.Tensor:
        return ops.linear(self.sequence_summary(encoded.last_hidden_state, rules), self.classifier, rules)
