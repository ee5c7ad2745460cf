"""DistilBERT: BERT's maths (post-LN layers, the same attention) under DistilBERT's names
(``q_lin/k_lin/v_lin/out_lin``, ``sa_layer_norm``, ``ffn.lin1/lin2``, ``output_layer_norm``), no
token types, no pooler; the sequence head is ``pre_classifier`` + ReLU + ``classifier``.

Shapes: ``[batch, seq]`` ids and masks, ``[batch, seq, hidden]`` hidden states.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..rules import ops
from ..rules.composites import RuleSet
from .bert import (
    BertEmbeddings,
    BertModel,
    BertPreTrainedModel,
    ChoiceScorer,
    SpanClassifier,
    _TiedLinear,
    add_and_norm,
    self_attention,
    sequence_loss,
    token_loss,
    with_labels,
)
from .config import DistilBertConfig
from .outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


class DistilBertEmbeddings(BertEmbeddings):
    """Word + position embeddings (no token types), LayerNorm, dropout."""

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config, token_types=False)


class DistilBertSelfAttention(nn.Module):
    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.q_lin = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_lin = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_lin = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_lin = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob


class DistilBertFFN(nn.Module):
    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.lin1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.lin2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.activation = config.hidden_act


class TransformerBlock(nn.Module):
    """One layer, the same computation as :class:`bert_lrp.models.bert.BertLayer` (no dropout
    after ``out_lin``, as in DistilBERT)."""

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.attention = DistilBertSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = DistilBertFFN(config)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, mask: Optional[torch.Tensor], need_probabilities: bool,
                rules: Optional[RuleSet]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        attention = self.attention
        dropout = attention.dropout_prob if self.training else 0.0
        context, probabilities = self_attention(ops.branch_input(hidden, rules), attention.q_lin, attention.k_lin,
                                                attention.v_lin, attention.num_heads, mask, dropout,
                                                need_probabilities, rules)
        attended = add_and_norm(context, attention.out_lin, None, hidden, self.sa_layer_norm, rules)
        inner = ops.activation(ops.linear(ops.branch_input(attended, rules), self.ffn.lin1, rules),
                               self.ffn.activation, rules)
        return add_and_norm(inner, self.ffn.lin2, self.ffn.dropout, attended, self.output_layer_norm, rules), probabilities


class DistilBertModel(BertModel):
    """The DistilBERT encoder: embeddings and ``transformer.layer``; no pooler.

    Positional arguments follow transformers' DistilBertModel (``input_ids, attention_mask,
    inputs_embeds, position_ids``); ``token_type_ids`` is accepted by name if all zero.
    """

    config_class = DistilBertConfig
    embeddings_class = DistilBertEmbeddings

    def __init__(self, config: DistilBertConfig) -> None:
        config = with_labels(config)
        BertPreTrainedModel.__init__(self, config)
        self.checkpoint_options = None  # activation checkpointing (activation_checkpointing_enable)
        self.checkpoint_every = 1
        self.embeddings = DistilBertEmbeddings(config)
        self.transformer = nn.Module()
        self.transformer.layer = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_hidden_layers))
        self.pooler = None
        self.init_weights()

    def encoder_layers(self) -> nn.ModuleList:
        return self.transformer.layer

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, position_ids=None,
                output_attentions: Optional[bool] = None, output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None, *,
                token_type_ids=None, embedding_output=None, rules: Optional[RuleSet] = None,
                **unused) -> BaseModelOutputWithPooling | tuple:
        return super().forward(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, return_dict,
                               embedding_output=embedding_output, rules=rules, **unused)


class DistilBertPreTrainedModel(BertPreTrainedModel):
    base_model_prefix = "distilbert"
    config_class = DistilBertConfig


class _DistilBertWithHead(DistilBertPreTrainedModel):
    """Shared by DistilBERT's task models: the encoder ``distilbert``, a head on its last hidden
    states ``[batch, seq, hidden]`` (:meth:`_logits`), the loss against ``labels`` (:meth:`_loss`)
    and the task's output record (``output_class``). A subclass adds its head's modules, then
    calls ``init_weights``."""

    output_class: type

    def __init__(self, config: DistilBertConfig, num_labels: Optional[int] = None) -> None:
        config = with_labels(config, num_labels)
        super().__init__(config)
        self.distilbert = DistilBertModel(config)

    def _logits(self, hidden: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        raise NotImplementedError

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, *, token_type_ids=None,
                embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        encoded = self.distilbert(input_ids, attention_mask, inputs_embeds, position_ids, output_attentions,
                                  output_hidden_states, token_type_ids=token_type_ids,
                                  embedding_output=embedding_output, rules=rules, return_dict=True, **unused)
        logits = self._logits(encoded.last_hidden_state, rules)
        loss = None if labels is None else self._loss(logits, labels)
        return self._finish(self.output_class(loss, logits, encoded.hidden_states, encoded.attentions), return_dict)


class DistilBertForSequenceClassification(_DistilBertWithHead):
    """DistilBERT + ``pre_classifier`` + ReLU + dropout + ``classifier`` on the first token.
    Logits ``[batch, num_labels]``."""

    task = "sequence"  # what explain() explains: see attribution/targets.py
    output_class = SequenceClassifierOutput

    def __init__(self, config: DistilBertConfig, num_labels: Optional[int] = None) -> None:
        super().__init__(config, num_labels)
        self.num_labels = self.config.num_labels
        self.pre_classifier = nn.Linear(self.config.hidden_size, self.config.hidden_size)
        self.classifier = nn.Linear(self.config.hidden_size, self.config.num_labels)
        self.dropout = nn.Dropout(self.config.seq_classif_dropout)
        self.init_weights()

    def _logits(self, hidden: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        pooled = ops.activation(ops.linear(hidden[:, 0], self.pre_classifier, rules), "relu", rules)
        return ops.linear(ops.dropout(pooled, self.dropout), self.classifier, rules)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sequence_loss(self.config.problem_type, logits, labels)


class DistilBertForTokenClassification(_DistilBertWithHead):
    """DistilBERT + dropout + linear classifier on every token. Logits ``[batch, seq, num_labels]``."""

    task = "token"  # what explain() explains: see attribution/targets.py
    output_class = TokenClassifierOutput

    def __init__(self, config: DistilBertConfig, num_labels: Optional[int] = None) -> None:
        super().__init__(config, num_labels)
        self.num_labels = self.config.num_labels
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        self.classifier = nn.Linear(self.config.hidden_size, self.config.num_labels)
        self.init_weights()

    def _logits(self, hidden: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        return ops.linear(ops.dropout(hidden, self.dropout), self.classifier, rules)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return token_loss(logits, labels)


class DistilBertForMaskedLM(_DistilBertWithHead):
    """DistilBERT + ``vocab_transform``, activation, ``vocab_layer_norm``, ``vocab_projector``
    (weight tied to the word embeddings, own bias). Logits ``[batch, seq, vocab_size]``."""

    task = "masked_lm"  # what explain() explains: see attribution/targets.py
    output_class = MaskedLMOutput

    decoder_bias_path = "vocab_projector.bias"
    untied_decoder_path = "vocab_projector"  # an nn.Linear of its own with tie_word_embeddings=False

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.vocab_transform = nn.Linear(self.config.hidden_size, self.config.hidden_size)
        self.vocab_layer_norm = nn.LayerNorm(self.config.hidden_size, eps=self.config.layer_norm_eps)
        if self.config.tie_word_embeddings:
            self.vocab_projector = nn.Module()
            self.vocab_projector.bias = nn.Parameter(torch.zeros(self.config.vocab_size))
        else:
            self.vocab_projector = nn.Linear(self.config.hidden_size, self.config.vocab_size)
        self.init_weights()

    def _extra_parameters_to_zero(self):
        return (self.vocab_projector.bias,)

    def _logits(self, hidden: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        hidden = ops.activation(ops.linear(hidden, self.vocab_transform, rules), self.config.hidden_act, rules)
        hidden = ops.layer_norm(hidden, self.vocab_layer_norm, rules)
        decoder = self.untied_decoder() or _TiedLinear(self.distilbert.embeddings.word_embeddings.weight,
                                                       self.vocab_projector.bias)
        return ops.linear(hidden, decoder, rules)

    def vocabulary_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The masked-LM head on any hidden states ``[..., hidden]`` -> ``[..., vocab_size]``."""
        return self._logits(hidden, None)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1), ignore_index=-100)


class DistilBertForQuestionAnswering(SpanClassifier, DistilBertPreTrainedModel):
    """DistilBERT + dropout (``qa_dropout``) + ``qa_outputs``: start and end logits of the answer
    span, ``[batch, seq]`` each (see :class:`~bert_lrp.models.bert.SpanClassifier`)."""

    encoder_class = DistilBertModel

    def _add_head(self, config: DistilBertConfig) -> None:
        super()._add_head(config)
        self.dropout = nn.Dropout(config.qa_dropout)

    def _span_input(self, hidden: torch.Tensor) -> torch.Tensor:
        return ops.dropout(hidden, self.dropout)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, start_positions=None,
                end_positions=None, position_ids=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, *, token_type_ids=None, embedding_output=None, rules: Optional[RuleSet] = None,
                **unused):
        """DistilBERT's argument order (no ``token_type_ids`` but by name, all zero)."""
        return SpanClassifier.forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids, position_ids=position_ids,
                                      inputs_embeds=inputs_embeds, start_positions=start_positions,
                                      end_positions=end_positions, output_attentions=output_attentions,
                                      output_hidden_states=output_hidden_states, return_dict=return_dict,
                                      embedding_output=embedding_output, rules=rules, **unused)


class DistilBertForMultipleChoice(ChoiceScorer, DistilBertPreTrainedModel):
    """DistilBERT + ``pre_classifier`` + ReLU + dropout + linear scorer on the first token of each
    choice. Inputs ``[batch, choices, seq]``; logits ``[batch, choices]``. ``explain`` explains the
    chosen choice's logit."""

    def __init__(self, config: DistilBertConfig) -> None:
        config = with_labels(config)
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.init_weights()

    def _choice_scores(self, encoded: BaseModelOutputWithPooling, rules: Optional[RuleSet] = None) -> torch.Tensor:
        pooled = ops.activation(ops.linear(encoded.last_hidden_state[:, 0], self.pre_classifier, rules), "relu", rules)
        return ops.linear(ops.dropout(pooled, self.dropout), self.classifier, rules)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, *, token_type_ids=None,
                **unused):
        """DistilBERT's argument order (no ``token_type_ids`` but by name, all zero)."""
        return ChoiceScorer.forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids, position_ids=position_ids,
                                    inputs_embeds=inputs_embeds, labels=labels, output_attentions=output_attentions,
                                    output_hidden_states=output_hidden_states, return_dict=return_dict, **unused)
