"""RoBERTa: BERT's layers with positions counted from ``pad_token_id + 1`` and a classification
head on ``<s>`` (dense + tanh + out_proj). Weight names as transformers' ``Roberta*`` models.

Shapes: ``[batch, seq]`` ids and masks, ``[batch, seq, hidden]`` hidden states.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..rules import ops
from ..rules.composites import RuleSet
from .bert import (
    BertEmbeddings,
    BertModel,
    BertPreTrainedModel,
    EncoderHead,
    InputError,
    PooledChoiceScorer,
    SpanClassifier,
    TokenClassifier,
    _classifier_dropout,
    _TiedLinear,
    sequence_loss,
    with_labels,
)
from .config import BertConfig, RobertaConfig
from .outputs import MaskedLMOutput, SequenceClassifierOutput


class RobertaEmbeddings(BertEmbeddings):
    """BERT's embeddings; default positions are ``pad + 1, pad + 2, ...`` over the non-padding
    tokens and ``pad`` at padding (transformers' cumulative-sum rule). The padding position's
    row gets no gradient, as in transformers (``padding_idx``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=config.pad_token_id)

    def default_position_ids(self, input_ids: Optional[torch.Tensor], batch: int, seq: int,
                             device: torch.device) -> torch.Tensor:
        pad = self.config.pad_token_id
        if input_ids is None:  # inputs_embeds: every token counts
            positions = torch.arange(pad + 1, seq + pad + 1, device=device).unsqueeze(0)
        else:
            keep = input_ids.ne(pad).long()
            positions = torch.cumsum(keep, dim=1) * keep + pad
        if seq + pad + 1 > self.config.max_position_embeddings:
            raise InputError(f"sequence length {seq} needs position ids up to {seq + pad} but "
                             f"max_position_embeddings is {self.config.max_position_embeddings}; truncate the input")
        return positions


class RobertaModel(BertModel):
    """The RoBERTa encoder: :class:`BertModel` with :class:`RobertaEmbeddings`."""

    config_class = RobertaConfig
    embeddings_class = RobertaEmbeddings


class RobertaPreTrainedModel(BertPreTrainedModel):
    base_model_prefix = "roberta"
    config_class = RobertaConfig


class ClassificationHead(nn.Module):
    """Sentence head on the first token: dropout, dense, ``activation``, dropout, out_proj
    (RoBERTa: tanh, ELECTRA: gelu). ``hidden [batch, seq, hidden]`` -> logits ``[batch, num_labels]``."""

    def __init__(self, config: BertConfig, activation: str) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)
        self.activation = activation

    def forward(self, hidden: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        x = ops.dropout(hidden[:, 0], self.dropout)
        x = ops.activation(ops.linear(x, self.dense, rules), self.activation, rules)
        return ops.linear(ops.dropout(x, self.dropout), self.out_proj, rules)


class FirstTokenClassifier(EncoderHead):
    """A :class:`ClassificationHead` (with the family's ``classifier_activation``) on the first token
    of ``self.base_model``'s output: the sequence classification of RoBERTa and ELECTRA. Logits
    ``[batch, num_labels]``."""

    classifier_activation: str

    def _add_head(self, config: BertConfig) -> None:
        self.num_labels = config.num_labels
        self.classifier = ClassificationHead(config, self.classifier_activation)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, *, embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output, rules, unused)
        logits = self.classifier(encoded.last_hidden_state, rules)
        loss = None if labels is None else sequence_loss(self.config.problem_type, logits, labels)
        return self._finish(SequenceClassifierOutput(loss, logits, encoded.hidden_states, encoded.attentions), return_dict)


class RobertaForSequenceClassification(FirstTokenClassifier, RobertaPreTrainedModel):
    """RoBERTa + :class:`ClassificationHead` (tanh) on ``<s>``. Logits ``[batch, num_labels]``."""

    task = "sequence"  # what explain() explains: see attribution/targets.py

    encoder_class = RobertaModel
    encoder_options = MappingProxyType({"add_pooling_layer": False})
    classifier_activation = "tanh"


class RobertaForTokenClassification(TokenClassifier, RobertaPreTrainedModel):
    """RoBERTa + dropout + linear classifier on every token. Logits ``[batch, seq, num_labels]``."""

    task = "token"  # what explain() explains: see attribution/targets.py

    encoder_class = RobertaModel
    encoder_options = MappingProxyType({"add_pooling_layer": False})


class RobertaLMHead(nn.Module):
    """dense, GELU, layer_norm, then the decoder tied to the word embeddings (own ``bias``), or,
    with ``tie_word_embeddings=False``, its own ``decoder`` ``nn.Linear`` (``bias`` kept, unused)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder = None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden: torch.Tensor, decoder_weight: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        hidden = ops.activation(ops.linear(hidden, self.dense, rules), "gelu", rules)
        hidden = ops.layer_norm(hidden, self.layer_norm, rules)
        decoder = self.decoder if self.decoder is not None else _TiedLinear(decoder_weight, self.bias)
        return ops.linear(hidden, decoder, rules)


class RobertaForMaskedLM(RobertaPreTrainedModel):
    """RoBERTa + masked-LM head. Logits ``[batch, seq, vocab_size]``."""

    task = "masked_lm"  # what explain() explains: see attribution/targets.py

    decoder_bias_path = "lm_head.bias"
    untied_decoder_path = "lm_head.decoder"

    def __init__(self, config: RobertaConfig) -> None:
        config = with_labels(config)
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config)
        self.init_weights()

    def _extra_parameters_to_zero(self):
        return (self.lm_head.bias,)

    def vocabulary_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The masked-LM head on any hidden states ``[..., hidden]`` -> ``[..., vocab_size]``."""
        return self.lm_head(hidden, self.roberta.embeddings.word_embeddings.weight, None)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, *, embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output, rules, unused)
        logits = self.lm_head(encoded.last_hidden_state, self.roberta.embeddings.word_embeddings.weight, rules)
        loss = None if labels is None else F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1),
                                                            ignore_index=-100)
        return self._finish(MaskedLMOutput(loss, logits, encoded.hidden_states, encoded.attentions), return_dict)


class RobertaForQuestionAnswering(SpanClassifier, RobertaPreTrainedModel):
    """RoBERTa + ``qa_outputs``: start and end logits of the answer span, ``[batch, seq]`` each."""

    encoder_class = RobertaModel
    encoder_options = MappingProxyType({"add_pooling_layer": False})


class RobertaForMultipleChoice(PooledChoiceScorer, RobertaPreTrainedModel):
    """RoBERTa + dropout + linear scorer on the pooled ``<s>`` of each choice. Inputs ``[batch,
    choices, seq]``; logits ``[batch, choices]``. ``explain`` explains the chosen choice's logit."""

    encoder_class = RobertaModel
