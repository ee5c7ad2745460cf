"""BERT in PyTorch, readable top to bottom, weight-compatible with transformers.

Shapes: ``[batch, seq]`` for token ids and masks, ``[batch, seq, hidden]`` for hidden states,
``[batch, heads, seq, seq]`` for attention probabilities.

Every layer takes an optional ``rules`` (:class:`bert_lrp.rules.composites.RuleSet`). Without it the
model runs the plain PyTorch fast path (fused scaled-dot-product attention); with it, every
operation relevance flows through runs as a rule Function of :mod:`bert_lrp.rules.functions`, so a single
backward pass computes the chosen attribution.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..errors import BertLrpError
from ..rules import ops
from ..rules.composites import RuleSet
from .base_methods import TransformersMethods, check_attention_implementation
from .checkpoint import PretrainedMixin
from .config import BertConfig, ConfigError, as_config
from .legacy import LegacyLRPCalls
from .outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    NextSentencePredictorOutput,
    PreTrainingOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


class InputError(BertLrpError, ValueError):
    """The inputs given to a model are inconsistent with it or with each other."""


# ---------------------------------------------------------------------------- embeddings
class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout.

    The families differ only here: ``size`` (ELECTRA's ``embedding_size``), ``token_types=False``
    (DistilBERT has none: the token-type summand is zeros) and :meth:`default_position_ids`
    (RoBERTa counts positions from ``pad_token_id + 1``).
    """

    def __init__(self, config: BertConfig, size: Optional[int] = None, token_types: bool = True) -> None:
        super().__init__()
        self.config = config
        size = size or config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, size)
        if token_types:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, size)
        self.LayerNorm = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def default_position_ids(self, input_ids: Optional[torch.Tensor], batch: int, seq: int,
                             device: torch.device) -> torch.Tensor:
        """Position ids ``[1|batch, seq]`` when none are given: ``0 .. seq-1``."""
        return torch.arange(seq, device=device).unsqueeze(0)

    def parts(self, input_ids: Optional[torch.Tensor] = None, token_type_ids: Optional[torch.Tensor] = None,
              position_ids: Optional[torch.Tensor] = None, inputs_embeds: Optional[torch.Tensor] = None
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three summands ``(word, position, token_type)``, each ``[batch, seq, hidden]``."""
        config = self.config
        if inputs_embeds is None:
            if input_ids is None:
                raise InputError("give either input_ids or inputs_embeds")
            _check_ids("input_ids", input_ids, config.vocab_size, "vocab_size")
            inputs_embeds = self.word_embeddings(input_ids)
        batch, seq = inputs_embeds.shape[:2]
        if seq > config.max_position_embeddings:
            raise InputError(f"sequence length {seq} exceeds max_position_embeddings "
                             f"{config.max_position_embeddings}; truncate the input")
        device = inputs_embeds.device
        if position_ids is None:
            position_ids = self.default_position_ids(input_ids, batch, seq, device)
        else:
            _check_shape("position_ids", position_ids, (batch, seq), allow_broadcast=True)
            _check_ids("position_ids", position_ids, config.max_position_embeddings, "max_position_embeddings")
        position = self.position_embeddings(position_ids).expand(batch, seq, -1)
        if token_type_ids is not None:
            _check_shape("token_type_ids", token_type_ids, (batch, seq), allow_broadcast=True)
        if not hasattr(self, "token_type_embeddings"):
            if token_type_ids is not None and bool(token_type_ids.any()):
                raise InputError(f"token_type_ids holds non-zero ids but {type(self.config).__name__} has no token "
                                 "types; drop token_type_ids")
            return inputs_embeds, position, torch.zeros_like(inputs_embeds)
        if token_type_ids is None:
            token_type_ids = torch.zeros((1, seq), dtype=torch.long, device=device)
        else:
            _check_ids("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size")
        token_type = self.token_type_embeddings(token_type_ids).expand(batch, seq, -1)
        return inputs_embeds, position, token_type

    def combine(self, word: torch.Tensor, position: torch.Tensor, token_type: torch.Tensor,
                rules: Optional[RuleSet] = None) -> torch.Tensor:
        """LayerNorm(word + position + token_type), then dropout: the embedding output."""
        return ops.dropout(ops.layer_norm(word + position + token_type, self.LayerNorm, rules), self.dropout)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                rules: Optional[RuleSet] = None) -> torch.Tensor:
        return self.combine(*self.parts(input_ids, token_type_ids, position_ids, inputs_embeds), rules=rules)


def _check_ids(name: str, ids: torch.Tensor, limit: int, limit_name: str) -> None:
    if ids.dtype.is_floating_point:
        raise InputError(f"{name} must hold integer ids, got dtype {ids.dtype}")
    if ids.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(ids.shape)}); an input needs at least one token")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= limit:
        bad = high if high >= limit else low
        where = (ids == bad).nonzero()[0].tolist()
        raise InputError(f"{name} holds id {bad} at position {where}, outside [0, {limit}) "
                         f"({limit_name} = {limit})")


def _check_shape(name: str, tensor: torch.Tensor, expected: Tuple[int, int], allow_broadcast: bool = False) -> None:
    shape = tuple(tensor.shape)
    if shape == expected or (allow_broadcast and len(shape) == 2 and shape[0] == 1 and shape[1] == expected[1]):
        return
    raise InputError(f"{name} has shape {list(shape)}, expected {list(expected)} (the shape of input_ids)")


# ----------------------------------------------------------------------------- encoder
class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads, self.head_size = config.num_attention_heads, config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def forward(self, hidden: torch.Tensor, mask: Optional[torch.Tensor], need_probabilities: bool,
                rules: Optional[RuleSet]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``hidden [batch, seq, hidden]`` -> context ``[batch, seq, hidden]``, probabilities."""
        dropout = self.dropout_prob if self.training else 0.0
        return self_attention(hidden, self.query, self.key, self.value, self.num_heads, mask, dropout,
                              need_probabilities, rules)


def self_attention(hidden: torch.Tensor, query: nn.Linear, key: nn.Linear, value: nn.Linear, num_heads: int,
                   mask: Optional[torch.Tensor], dropout: float, need_probabilities: bool, rules: Optional[RuleSet]
                   ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Multi-head self-attention (every family's): ``hidden [batch, seq, hidden]`` -> context
    ``[batch, seq, hidden]`` (heads concatenated, before the output projection) and the
    probabilities ``[batch, heads, seq, seq]`` if asked. Under rules the attention takes the rules
    of ``query``'s encoder layer (the RuleSet knows it by the module's site)."""
    batch, seq, width = hidden.shape

    def split(x: torch.Tensor) -> torch.Tensor:  # [batch, seq, hidden] -> [batch, heads, seq, head_size]
        return x.view(batch, seq, num_heads, -1).transpose(1, 2)

    q = split(ops.linear(hidden, query, rules))
    k = split(ops.linear(hidden, key, rules))
    v = split(ops.linear(hidden, value, rules))
    context, probabilities = ops.attention(q, k, v, mask, dropout, need_probabilities, rules, query)
    if rules is not None and rules.head_contexts is not None:
        rules.head_contexts.append(context)
    return context.transpose(1, 2).reshape(batch, seq, -1), probabilities


def add_and_norm(x: torch.Tensor, dense, dropout: Optional[nn.Dropout], residual: torch.Tensor,
                 norm: nn.LayerNorm, rules: Optional[RuleSet]) -> torch.Tensor:
    """``LayerNorm(dropout(dense(x)) + residual)``: how every sub-layer of the post-LN families ends."""
    projected = ops.linear(x, dense, rules)
    if dropout is not None:
        projected = ops.dropout(projected, dropout)
    return ops.layer_norm(projected + residual, norm, rules)


class BertSelfOutput(nn.Module):
    """Projection of the attention context, dropout, residual add, LayerNorm."""

    def __init__(self, config: BertConfig, in_size: Optional[int] = None) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        return add_and_norm(x, self.dense, self.dropout, residual, self.LayerNorm, rules)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden, mask, need_probabilities, rules):
        context, probabilities = self.self(ops.branch_input(hidden, rules), mask, need_probabilities, rules)
        return self.output(context, hidden, rules), probabilities


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = config.hidden_act

    def forward(self, hidden: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        return ops.activation(ops.linear(hidden, self.dense, rules), self.activation, rules)


class BertOutput(BertSelfOutput):
    """Down-projection of the feed-forward block, dropout, residual add, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config, in_size=config.intermediate_size)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden, mask, need_probabilities, rules):
        attended, probabilities = self.attention(hidden, mask, need_probabilities, rules)
        intermediate = self.intermediate(ops.branch_input(attended, rules), rules)
        return self.output(intermediate, attended, rules), probabilities


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    """tanh(dense(hidden state of [CLS]))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        return ops.activation(ops.linear(hidden[:, 0], self.dense, rules), "tanh", rules)


def additive_mask(attention_mask: Optional[torch.Tensor], shape: Tuple[int, int], dtype: torch.dtype
                  ) -> Optional[torch.Tensor]:
    """``[batch, seq]`` of 1 (attend) / 0 (padding) -> additive ``[batch, 1, 1|seq, seq]`` mask."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 3 and tuple(attention_mask.shape) == (shape[0], shape[1], shape[1]):
        expanded = attention_mask[:, None, :, :]
    elif tuple(attention_mask.shape) == tuple(shape):
        expanded = attention_mask[:, None, None, :]
    else:
        raise InputError(f"attention_mask has shape {list(attention_mask.shape)}, expected {list(shape)} "
                         f"(the shape of input_ids) or {[shape[0], shape[1], shape[1]]}")
    if bool(attention_mask.all()):
        return None  # nothing to mask: let the fused attention kernel run without a mask
    return (1.0 - expanded.to(dtype)) * torch.finfo(dtype).min


# ------------------------------------------------------------------------------ models
class BertPreTrainedModel(TransformersMethods, PretrainedMixin, nn.Module):
    """Weight initialisation as transformers does it, checkpoint I/O (see :mod:`checkpoint`) and
    transformers' base-class methods (see :mod:`base_methods`)."""

    base_model_prefix = "bert"
    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        config = as_config(config)
        config.validate()
        _refuse_decoder(config)
        config._attn_implementation = check_attention_implementation(config.extra.get("_attn_implementation"))
        if self.decoder_bias_path is not None and self.untied_decoder_path is None and not config.tie_word_embeddings:
            raise ConfigError(f"config field tie_word_embeddings=False is not supported by {type(self).__name__}: "
                              "its decoder always reads the word embeddings (set it to True)")
        self.config = config

    def _encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, output_attentions,
                output_hidden_states, embedding_output, rules: Optional[RuleSet], unused: dict
                ) -> BaseModelOutputWithPooling:
        """What every head does first: refuse unknown keywords, run ``self.base_model`` (the
        encoder) and return its output record (``last_hidden_state [batch, seq, hidden]``, ...)."""
        _reject_unknown(unused)
        return self.base_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, inputs_embeds=inputs_embeds,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                               embedding_output=embedding_output, rules=rules, return_dict=True)

    def _finish(self, output, return_dict: Optional[bool]):
        """The output record, or its tuple when ``return_dict`` (default: the config's) is False."""
        return output if _flag(return_dict, self.config.return_dict) else output.to_tuple()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        self.apply(self._init_weights)
        for extra in self._extra_parameters_to_zero():
            nn.init.zeros_(extra)

    def _extra_parameters_to_zero(self):
        return ()

    # ------------------------------------------- what attribution and transformers' scripts read
    @property
    def base_model(self) -> "BertModel":
        """The encoder of a task model (``model.bert``, ``model.roberta``, ...), or the model itself.

        Every family's encoder offers the same accessors, which attribution uses instead of
        family-specific names: ``embedding_parts``, ``combine_embeddings``, ``embed`` and
        ``encoder_layers`` (see :class:`BertModel`).
        """
        return getattr(self, self.base_model_prefix, self) if self.base_model_prefix else self

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    main_input_name = "input_ids"

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of parameters (shared ones once), as transformers counts them."""
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)} if exclude_embeddings else set()
        return sum(p.numel() for p in self.parameters()
                   if (p.requires_grad or not only_trainable) and id(p) not in embeddings)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        self.base_model.embeddings.word_embeddings = embeddings

    @classmethod
    def can_generate(cls) -> bool:
        return False


def _flag(value: Optional[bool], default: bool) -> bool:
    return bool(default) if value is None else bool(value)


def _refuse_decoder(config: BertConfig) -> None:
    """bert-lrp's models are encoders: decoder use (causal attention, cross-attention, caches) is refused."""
    for key in ("is_decoder", "add_cross_attention"):
        if getattr(config, key):
            raise ConfigError(f"config field {key}=True is not supported: bert-lrp's models are encoders "
                              "(no causal self-attention, cross-attention or key/value cache); set it to False")


class BertModel(BertPreTrainedModel):
    """The encoder: embeddings, ``num_hidden_layers`` transformer layers, optional pooler."""

    base_model_prefix = ""
    embeddings_class = BertEmbeddings

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        config = as_config(config)
        super().__init__(config)
        # activation checkpointing (activation_checkpointing_enable; an old config's gradient_checkpointing=True)
        self.checkpoint_options: Optional[dict] = {"use_reentrant": True} if config.gradient_checkpointing else None
        self.checkpoint_every = 1
        self.embeddings = self.embeddings_class(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer and config.add_pooling_layer else None
        self.init_weights()

    # The accessors every family's encoder provides (attribution uses these, not family names).
    def embedding_parts(self, input_ids: Optional[torch.Tensor] = None, token_type_ids: Optional[torch.Tensor] = None,
                        position_ids: Optional[torch.Tensor] = None, inputs_embeds: Optional[torch.Tensor] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three summands ``(word, position, token_type)`` of the embeddings, each
        ``[batch, seq, embedding size]`` (token_type is zeros for a family without token types)."""
        return self.embeddings.parts(input_ids, token_type_ids, position_ids, inputs_embeds)

    def combine_embeddings(self, word: torch.Tensor, position: torch.Tensor, token_type: torch.Tensor,
                           rules: Optional[RuleSet] = None) -> torch.Tensor:
        """The summands -> the embedding output ``[batch, seq, hidden]``, the first layer's input."""
        return self.embeddings.combine(word, position, token_type, rules=rules)

    def embed(self, input_ids: Optional[torch.Tensor] = None, token_type_ids: Optional[torch.Tensor] = None,
              position_ids: Optional[torch.Tensor] = None, inputs_embeds: Optional[torch.Tensor] = None,
              rules: Optional[RuleSet] = None) -> torch.Tensor:
        """``[batch, seq]`` ids -> embedding output ``[batch, seq, hidden]`` (what ``embedding_output=`` takes)."""
        return self.combine_embeddings(*self.embedding_parts(input_ids, token_type_ids, position_ids, inputs_embeds),
                                       rules=rules)

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether encoder layers are recomputed in the backward pass (transformers' module flag;
        setting it True checkpoints every layer re-entrantly, False stops)."""
        return self.checkpoint_options is not None

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, value: bool) -> None:
        self.checkpoint_options = {"use_reentrant": True} if value else None

    def encoder_layers(self) -> nn.ModuleList:
        """The transformer layers in order (``encoder.layer``; DistilBERT's ``transformer.layer``)."""
        return self.encoder.layer

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, position_ids: Optional[torch.Tensor] = None,
                inputs_embeds: Optional[torch.Tensor] = None, output_attentions: Optional[bool] = None,
                output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None, *,
                embedding_output: Optional[torch.Tensor] = None, rules: Optional[RuleSet] = None,
                **unused: Any) -> BaseModelOutputWithPooling | tuple:
        """Run the encoder.

        ``embedding_output`` (``[batch, seq, hidden]``) skips the embedding layer: attribution
        methods use it to read relevance at, or interpolate, the embedding output.
        """
        _reject_unknown(unused)
        config = self.config
        output_attentions = _flag(output_attentions, config.output_attentions)
        output_hidden_states = _flag(output_hidden_states, config.output_hidden_states)
        if rules is not None and rules.copies > 1:
            _check_identical_copies(rules.copies, input_ids=input_ids, token_type_ids=token_type_ids,
                                    position_ids=position_ids, inputs_embeds=inputs_embeds,
                                    embedding_output=embedding_output, attention_mask=attention_mask)
        if embedding_output is None:
            embedding_output = self.embed(input_ids, token_type_ids, position_ids, inputs_embeds, rules=rules)
        shape = tuple(embedding_output.shape[:2])
        mask = additive_mask(attention_mask, shape, embedding_output.dtype)
        # eager: the explicit softmax; sdpa: PyTorch's fused kernel unless the probabilities are
        # asked for (under rules, ops.attention always takes the explicit path of the rules)
        need_probabilities = output_attentions or config.attn_implementation == "eager"
        checkpointing = self.checkpoint_options if self.training and rules is None else None
        hidden = embedding_output
        all_hidden, all_attentions = [hidden], []
        for index, layer in enumerate(self.encoder_layers()):
            if checkpointing is not None and index % self.checkpoint_every == 0:
                hidden, probabilities = torch.utils.checkpoint.checkpoint(
                    layer, hidden, mask, need_probabilities, None, **checkpointing)
            else:
                hidden, probabilities = layer(hidden, mask, need_probabilities, rules)
            all_hidden.append(hidden)
            all_attentions.append(probabilities)
        hidden = ops.encoder_output(hidden, rules)
        pooled = self.pooler(hidden, rules) if self.pooler is not None else None
        output = BaseModelOutputWithPooling(
            last_hidden_state=hidden, pooler_output=pooled,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None)
        return self._finish(output, return_dict)


def _check_identical_copies(copies: int, **tensors: Optional[torch.Tensor]) -> None:
    """A stacked batch (several rule sets in one pass) holds ``copies`` identical copies along
    dim 0: the rule Functions compute the forward once, on the first copy."""
    for name, tensor in tensors.items():
        if tensor is None or tensor.shape[0] == 1:  # broadcast rows are shared by every copy
            continue
        if tensor.shape[0] % copies:
            raise InputError(f"{name} has {tensor.shape[0]} rows, not a multiple of the {copies} stacked copies "
                             f"the rules expect")
        stacked = tensor.unflatten(0, (copies, -1))
        if not bool((stacked == stacked[:1]).all()):
            raise InputError(f"{name}: the {copies} stacked copies along dim 0 differ; rules with several "
                             f"composites need identical copies (explain() builds them)")


# keyword arguments transformers' Trainer passes to models whose forward takes **kwargs; the
# losses here are means, so they need nothing from them (as transformers' own encoder models)
IGNORED_KWARGS = ("num_items_in_batch",)
# decoder inputs: refused with what is unsupported (an encoder has no cross-attention or cache)
DECODER_KWARGS = ("encoder_hidden_states", "encoder_attention_mask", "past_key_values", "use_cache",
                  "cache_position")


def _reject_unknown(unused: dict) -> None:
    decoder = [k for k in unused if k in DECODER_KWARGS and unused[k] is not None and unused[k] is not False]
    if decoder:
        raise InputError(f"{', '.join(sorted(decoder))}: decoder use (cross-attention, key/value cache) is not "
                         "supported; bert-lrp's models are encoders")
    unknown = [k for k in unused if k not in IGNORED_KWARGS and k not in DECODER_KWARGS]
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")


def _classifier_dropout(config: BertConfig) -> float:
    """``classifier_dropout`` if set, else ``hidden_dropout_prob`` (as transformers)."""
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


class BertForSequenceClassification(BertPreTrainedModel):
    """BERT + dropout + linear classifier on the pooled [CLS] state. Logits ``[batch, num_labels]``.

    ``init_lrp=True`` (the original BERT-LRP's flag; also ``from_pretrained(folder, init_lrp=True)``)
    builds :class:`LegacyBertForSequenceClassification` instead, which adds its ``backward_lrp`` /
    ``backward_gradient`` / ... calls (:mod:`bert_lrp.models.legacy`).
    """

    task = "sequence"  # what explain() explains: see attribution/targets.py

    supports_init_lrp = True

    def __new__(cls, *args: Any, init_lrp: bool = False, **kwargs: Any):
        if init_lrp and cls is BertForSequenceClassification:
            cls = LegacyBertForSequenceClassification  # the BERT-LRP calling convention
        return super().__new__(cls)

    def __init__(self, config: BertConfig, num_labels: Optional[int] = None, init_lrp: bool = False) -> None:
        config = with_labels(config, num_labels)
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, *, embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output, rules, unused)
        pooled = encoded.pooler_output if encoded.pooler_output is not None else encoded.last_hidden_state[:, 0]
        logits = ops.linear(ops.dropout(pooled, self.dropout), self.classifier, rules)
        loss = None if labels is None else self._loss(logits, labels)
        return self._finish(SequenceClassifierOutput(loss, logits, encoded.hidden_states, encoded.attentions), return_dict)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sequence_loss(self.config.problem_type, logits, labels)


def sequence_loss(problem: Optional[str], logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Loss of sequence logits ``[batch, num_labels]`` as transformers picks it: regression (MSE),
    single-label (cross-entropy) or multi-label (BCE), from ``problem_type`` or the labels."""
    num_labels = logits.shape[-1]
    if problem is None:
        if num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of per-token logits ``[batch, seq, n]`` against ``[batch, seq]`` labels (-100 ignored)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


class EncoderHead:
    """A task head on its family's encoder, built the same way for every family: the family's
    ``encoder_class`` (with ``encoder_options``) becomes ``self.<base_model_prefix>``, then
    :meth:`_add_head` adds the head's own modules, then the weights are initialised."""

    encoder_class: type
    encoder_options: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, config: BertConfig, num_labels: Optional[int] = None) -> None:
        config = with_labels(config, num_labels)
        super().__init__(config)  # type: ignore[call-arg]  (the family's PreTrainedModel, next in the MRO)
        setattr(self, self.base_model_prefix, self.encoder_class(config, **self.encoder_options))
        self._add_head(config)
        self.init_weights()

    def _add_head(self, config: BertConfig) -> None:
        raise NotImplementedError


class TokenClassifier(EncoderHead):
    """Dropout + linear classifier on every token of ``self.base_model``'s output: the token
    classification head of BERT, RoBERTa and ELECTRA. Logits ``[batch, seq, num_labels]``."""

    def _add_head(self, config: BertConfig) -> None:
        self.num_labels = config.num_labels
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, *, embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output, rules, unused)
        logits = ops.linear(ops.dropout(encoded.last_hidden_state, self.dropout), self.classifier, rules)
        loss = None if labels is None else token_loss(logits, labels)
        return self._finish(TokenClassifierOutput(loss, logits, encoded.hidden_states, encoded.attentions), return_dict)


def with_labels(config: BertConfig, num_labels: Optional[int] = None) -> BertConfig:
    """Our ``config`` (see :func:`~bert_lrp.models.config.as_config`: transformers' are read as
    ours) with ``num_labels`` labels (a copy when it differs)."""
    config = as_config(config)
    if num_labels is not None and num_labels != config.num_labels:
        return config.copy(num_labels=num_labels, id2label=None)
    return config


class LegacyBertForSequenceClassification(LegacyLRPCalls, BertForSequenceClassification):
    """A sequence classifier with BERT-LRP's ``backward_*`` calls; what
    ``BertForSequenceClassification(config, num_labels, init_lrp=True)`` builds."""


class BertForTokenClassification(TokenClassifier, BertPreTrainedModel):
    """BERT + dropout + linear classifier on every token. Logits ``[batch, seq, num_labels]``."""

    task = "token"  # what explain() explains: see attribution/targets.py

    encoder_class = BertModel
    encoder_options = MappingProxyType({"add_pooling_layer": False})


class BertLMPredictionHead(nn.Module):
    """transform (dense, activation, LayerNorm), then the decoder: tied to the word embeddings
    (with ``bias``), or, with ``tie_word_embeddings=False``, its own ``decoder`` ``nn.Linear`` (as
    transformers: ``bias`` is then kept but unused)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.activation = config.hidden_act
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder = None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden: torch.Tensor, decoder_weight: torch.Tensor, rules: Optional[RuleSet]) -> torch.Tensor:
        hidden = ops.activation(ops.linear(hidden, self.transform.dense, rules), self.activation, rules)
        hidden = ops.layer_norm(hidden, self.transform.LayerNorm, rules)
        decoder = self.decoder if self.decoder is not None else _TiedLinear(decoder_weight, self.bias)
        return ops.linear(hidden, decoder, rules)


class _TiedLinear:
    """A weight/bias pair shaped like ``nn.Linear`` (the decoder shares the word embeddings)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias = weight, bias


class _MLMHeads(nn.Module):
    def __init__(self, config: BertConfig, next_sentence: bool) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        if next_sentence:
            self.seq_relationship = nn.Linear(config.hidden_size, 2)


class _BertWithMLMHead(BertPreTrainedModel):
    """Shared by the masked-LM models: encoder, ``cls`` heads, and the masked-LM loss."""

    decoder_bias_path = "cls.predictions.bias"
    untied_decoder_path = "cls.predictions.decoder"

    def __init__(self, config: BertConfig, pooler: bool, next_sentence: bool) -> None:
        config = as_config(config)
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=pooler)
        self.cls = _MLMHeads(config, next_sentence=next_sentence)
        self.init_weights()

    def _extra_parameters_to_zero(self):
        return (self.cls.predictions.bias,)

    def vocabulary_logits(self, hidden: torch.Tensor, rules: Optional[RuleSet] = None) -> torch.Tensor:
        """The masked-LM head on any hidden states ``[..., hidden]`` -> ``[..., vocab_size]`` (the
        logit lens reads intermediate layers with it)."""
        return self.cls.predictions(hidden, self.bert.embeddings.word_embeddings.weight, rules)

    def _masked_lm_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1), ignore_index=-100)


class BertForMaskedLM(_BertWithMLMHead):
    """BERT + masked-LM head. Logits ``[batch, seq, vocab_size]``."""

    task = "masked_lm"  # what explain() explains: see attribution/targets.py

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config, pooler=False, next_sentence=False)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, *, embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output, rules, unused)
        logits = self.vocabulary_logits(encoded.last_hidden_state, rules)
        loss = None if labels is None else self._masked_lm_loss(logits, labels)
        return self._finish(MaskedLMOutput(loss, logits, encoded.hidden_states, encoded.attentions), return_dict)


class BertForPreTraining(_BertWithMLMHead):
    """BERT + masked-LM head + next-sentence head (as Google's pre-training checkpoints hold)."""

    task = "masked_lm"  # what explain() explains: see attribution/targets.py

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config, pooler=True, next_sentence=True)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, next_sentence_label=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, *, embedding_output=None,
                rules: Optional[RuleSet] = None, **unused):
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output, rules, unused)
        prediction = self.vocabulary_logits(encoded.last_hidden_state, rules)
        relationship = ops.linear(encoded.pooler_output, self.cls.seq_relationship, rules)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = (self._masked_lm_loss(prediction, labels)
                    + F.cross_entropy(relationship.view(-1, 2), next_sentence_label.view(-1)))
        return self._finish(PreTrainingOutput(loss, prediction, relationship, encoded.hidden_states,
                                         encoded.attentions), return_dict)


# ---------------------------------------------------------------- the other heads of BERT
def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
              end_positions: torch.Tensor) -> torch.Tensor:
    """Mean of the cross-entropies of the answer's start and end positions (``[batch]``) over the
    ``[batch, seq]`` logits; positions outside the sequence are clamped to ``seq`` and ignored."""
    seq = start_logits.shape[1]
    start = start_positions.reshape(-1).clamp(0, seq)
    end = end_positions.reshape(-1).clamp(0, seq)
    return (F.cross_entropy(start_logits, start, ignore_index=seq)
            + F.cross_entropy(end_logits, end, ignore_index=seq)) / 2


class SpanClassifier(EncoderHead):
    """Linear ``qa_outputs`` on every token of ``self.base_model``'s output: extractive question
    answering (BERT, RoBERTa, ELECTRA, DistilBERT). Logits ``start_logits`` / ``end_logits`` ``[batch, seq]``;
    the output's ``logits`` ``[batch, seq, 2]`` holds both, so ``explain`` (task ``token``) explains
    the start logit at a position with ``target=(position, 0)`` and the end logit with ``(position, 1)``."""

    task = "token"  # what explain() explains: see attribution/targets.py

    def _add_head(self, config: BertConfig) -> None:
        if config.num_labels != 2:
            raise ConfigError(f"config field num_labels must be 2 for {type(self).__name__} (start and end "
                              f"logits), got {config.num_labels}")
        self.num_labels = 2
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def _span_input(self, hidden: torch.Tensor) -> torch.Tensor:
        """What ``qa_outputs`` reads, from the last hidden states ``[batch, seq, hidden]`` (as they are;
        DistilBERT drops out first)."""
        return hidden

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, *, embedding_output=None,
                rules: Optional[RuleSet] = None, **unused):
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output, rules, unused)
        logits = ops.linear(self._span_input(encoded.last_hidden_state), self.qa_outputs, rules)
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return self._finish(QuestionAnsweringModelOutput(loss, start_logits, end_logits, encoded.hidden_states,
                                                         encoded.attentions), return_dict)


class BertForQuestionAnswering(SpanClassifier, BertPreTrainedModel):
    """BERT + ``qa_outputs`` (start and end logits of the answer span, ``[batch, seq]`` each)."""

    encoder_class = BertModel
    encoder_options = MappingProxyType({"add_pooling_layer": False})


def _flatten_choices(tensor: Optional[torch.Tensor], width: int) -> Optional[torch.Tensor]:
    """``[batch, choices, seq(, hidden)]`` -> ``[batch * choices, seq(, hidden)]``."""
    if tensor is None:
        return None
    return tensor.reshape(-1, *tensor.shape[-width:])


class ChoiceScorer:
    """Multiple choice, written once for every family: each choice of the ``[batch, choices, seq]``
    inputs (``[batch, choices, seq, hidden]`` inputs_embeds) is encoded on its own by
    ``self.base_model``; the family's :meth:`_choice_scores` turns the last hidden states
    ``[batch * choices, seq, hidden]`` (and the pooled ``[batch * choices, hidden]`` if the encoder
    pools) into one score per choice ``[batch * choices, 1]``. Logits ``[batch, choices]``; loss:
    cross-entropy against ``labels [batch]``. ``explain`` explains the chosen choice's logit
    through :meth:`single_choice_scorer` (see :mod:`bert_lrp.attribution.choices`)."""

    task = "multiple_choice"  # what explain() explains: see attribution/choices.py

    def _choice_scores(self, encoded: BaseModelOutputWithPooling, rules: Optional[RuleSet] = None) -> torch.Tensor:
        raise NotImplementedError

    def single_choice_scorer(self) -> "SingleChoiceScorer":
        """This model as a one-logit sequence classifier of one choice per row (its own Parameters)."""
        return SingleChoiceScorer(self)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **unused):
        _reject_unknown(unused)
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None or reference.dim() < 3:
            raise InputError(f"{type(self).__name__} takes inputs of shape [batch, choices, seq] (input_ids) or "
                             "[batch, choices, seq, hidden] (inputs_embeds)")
        choices = reference.shape[1]
        encoded = self.base_model(input_ids=_flatten_choices(input_ids, 1),
                                  attention_mask=_flatten_choices(attention_mask, 1),
                                  token_type_ids=_flatten_choices(token_type_ids, 1),
                                  position_ids=_flatten_choices(position_ids, 1),
                                  inputs_embeds=_flatten_choices(inputs_embeds, 2),
                                  output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                  return_dict=True)
        logits = self._choice_scores(encoded).view(-1, choices)
        loss = None if labels is None else F.cross_entropy(logits, labels.view(-1))
        return self._finish(MultipleChoiceModelOutput(loss, logits, encoded.hidden_states, encoded.attentions),
                            return_dict)


class PooledChoiceScorer(EncoderHead, ChoiceScorer):
    """:class:`ChoiceScorer` with dropout + linear ``classifier`` on the pooled first token (BERT, RoBERTa)."""

    def _add_head(self, config: BertConfig) -> None:
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, 1)

    def _choice_scores(self, encoded: BaseModelOutputWithPooling, rules: Optional[RuleSet] = None) -> torch.Tensor:
        return ops.linear(ops.dropout(encoded.pooler_output, self.dropout), self.classifier, rules)


class SingleChoiceScorer(nn.Module):
    """A multiple-choice model seen as a one-logit sequence classifier: ``[n, seq]`` inputs, each
    row one choice, -> logits ``[n, 1]``, the score that choice gets among the multiple-choice
    logits (choices are encoded on their own, so a choice's score reads its own tokens only).
    What ``explain`` runs to explain a chosen choice; it holds the model's own Parameters."""

    task = "sequence"

    def __init__(self, model: ChoiceScorer) -> None:
        super().__init__()
        self.choices = model
        self.config = model.config
        self.train(model.training)

    @property
    def base_model(self) -> nn.Module:
        return self.choices.base_model

    @property
    def tuned_composite(self):
        return getattr(self.choices, "tuned_composite", None)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None, *,
                embedding_output=None, rules: Optional[RuleSet] = None, **unused) -> SequenceClassifierOutput:
        encoded = self.choices._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                       output_attentions, output_hidden_states, embedding_output, rules, unused)
        logits = self.choices._choice_scores(encoded, rules)
        return SequenceClassifierOutput(None, logits, encoded.hidden_states, encoded.attentions)


class BertForMultipleChoice(PooledChoiceScorer, BertPreTrainedModel):
    """BERT + dropout + linear scorer on the pooled [CLS] of each choice. Inputs ``[batch, choices,
    seq]``; logits ``[batch, choices]`` (one score per choice). ``explain`` explains the chosen
    choice's logit: relevance ``[batch, choices, seq]``, zero outside that choice."""

    encoder_class = BertModel


class BertOnlyNSPHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForNextSentencePrediction(EncoderHead, BertPreTrainedModel):
    """BERT + the next-sentence head on the pooled [CLS]: logits ``[batch, 2]`` (0: the second
    text follows the first, 1: it is random); explained as a sequence classifier."""

    task = "sequence"  # what explain() explains: see attribution/targets.py

    encoder_class = BertModel

    def _add_head(self, config: BertConfig) -> None:
        self.cls = BertOnlyNSPHead(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, *, embedding_output=None, rules: Optional[RuleSet] = None, **unused):
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_attentions, output_hidden_states, embedding_output, rules, unused)
        logits = ops.linear(encoded.pooler_output, self.cls.seq_relationship, rules)
        loss = None if labels is None else F.cross_entropy(logits, labels.view(-1))
        return self._finish(NextSentencePredictorOutput(loss, logits, encoded.hidden_states, encoded.attentions),
                            return_dict)


class BertLMHeadModel(BertPreTrainedModel):
    """Refused: BERT as a causal decoder (causal self-attention, cross-attention to an encoder,
    key/value cache, ``generate``) is not part of bert-lrp, whose models are encoders."""

    def __init__(self, config: Any = None, *args: Any, **kwargs: Any) -> None:
        raise ConfigError("BertLMHeadModel is not supported: bert-lrp's models are encoders (no causal "
                          "self-attention, cross-attention, key/value cache or generate()); use BertForMaskedLM "
                          "for masked-token prediction, or transformers' BertLMHeadModel for decoding")
