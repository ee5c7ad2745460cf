"""Auto classes: pick the family from ``config.json``'s ``model_type``, as transformers' do.

``AutoModelForSequenceClassification.from_pretrained(folder_or_hub_id)`` loads a BERT, RoBERTa,
DistilBERT or ELECTRA checkpoint into the matching class of this package; any other
``model_type`` is a :class:`~bert_lrp.models.config.ConfigError` listing the supported ones.
A folder without ``model_type`` (Google's ``bert_config.json``) is BERT.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from .bert import (
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from .checkpoint import resolve_pretrained
from .config import BertConfig, ConfigError, read_model_type
from .distilbert import (
    DistilBertForMaskedLM,
    DistilBertForMultipleChoice,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
)
from .electra import (
    ElectraForMultipleChoice,
    ElectraForQuestionAnswering,
    ElectraForSequenceClassification,
    ElectraForTokenClassification,
    ElectraModel,
)
from .roberta import (
    RobertaForMaskedLM,
    RobertaForMultipleChoice,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
)
from .tokenization import BertTokenizer, RobertaTokenizer

# model_type -> task -> class
MODELS: Dict[str, Dict[str, type]] = {
    "bert": {"base": BertModel, "sequence": BertForSequenceClassification, "token": BertForTokenClassification,
             "masked_lm": BertForMaskedLM, "question_answering": BertForQuestionAnswering,
             "multiple_choice": BertForMultipleChoice},
    "roberta": {"base": RobertaModel, "sequence": RobertaForSequenceClassification,
                "token": RobertaForTokenClassification, "masked_lm": RobertaForMaskedLM,
                "question_answering": RobertaForQuestionAnswering, "multiple_choice": RobertaForMultipleChoice},
    "distilbert": {"base": DistilBertModel, "sequence": DistilBertForSequenceClassification,
                   "token": DistilBertForTokenClassification, "masked_lm": DistilBertForMaskedLM,
                   "question_answering": DistilBertForQuestionAnswering,
                   "multiple_choice": DistilBertForMultipleChoice},
    "electra": {"base": ElectraModel, "sequence": ElectraForSequenceClassification,
                "token": ElectraForTokenClassification, "question_answering": ElectraForQuestionAnswering,
                "multiple_choice": ElectraForMultipleChoice},
}
TOKENIZERS: Dict[str, type] = {"bert": BertTokenizer, "roberta": RobertaTokenizer, "distilbert": BertTokenizer,
                               "electra": BertTokenizer}
SUPPORTED = ", ".join(MODELS)


def model_class(model_type: str, task: str, source: str = "config.json") -> type:
    """The class of ``task`` (``base``, ``sequence``, ``token``, ``masked_lm``, ``question_answering``,
    ``multiple_choice``) for ``model_type``."""
    if model_type not in MODELS:
        raise ConfigError(f"{source}: model_type {model_type!r} is not supported; supported types: {SUPPORTED}")
    if task not in MODELS[model_type]:
        have = [t for t in MODELS if task in MODELS[t]]
        raise ConfigError(f"{source}: no {task} model for model_type {model_type!r} "
                          f"(available for: {', '.join(have)})")
    return MODELS[model_type][task]


def model_type_of(folder: str) -> str:
    return read_model_type(folder) or "bert"


class _AutoModel:
    """``from_pretrained`` / ``from_config`` dispatching on ``model_type``."""

    task = "base"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__name__} is not instantiated: use {type(self).__name__}.from_pretrained(...) "
                        f"or .from_config(config)")

    @classmethod
    def from_pretrained(cls, name_or_path: Optional[str | os.PathLike], *args: Any, **kwargs: Any):
        config = kwargs.get("config")
        if name_or_path is None and config is not None:  # an in-memory checkpoint (state_dict=)
            return model_class(config.model_type, cls.task, "config=").from_pretrained(None, *args, **kwargs)
        path = resolve_pretrained(name_or_path)
        folder = path if os.path.isdir(path) else (os.path.dirname(path) or ".")
        model_type = config.model_type if config is not None else model_type_of(folder)
        source = os.path.join(folder, "config.json")
        return model_class(model_type, cls.task, source).from_pretrained(path, *args, **kwargs)

    @classmethod
    def from_config(cls, config: BertConfig, *args: Any, **kwargs: Any):
        """A freshly initialised model of ``config``'s family (ours or transformers' config;
        ``attn_implementation=`` / ``dtype=`` as ``_from_config`` takes them)."""
        return model_class(config.model_type, cls.task, type(config).__name__)._from_config(config, *args, **kwargs)


class AutoModel(_AutoModel):
    """The encoder of any supported family (``BertModel``, ``RobertaModel``, ...)."""

    task = "base"


class AutoModelForSequenceClassification(_AutoModel):
    """One label per text (pair): ``<Family>ForSequenceClassification``."""

    task = "sequence"


class AutoModelForTokenClassification(_AutoModel):
    """One label per token: ``<Family>ForTokenClassification``."""

    task = "token"


class AutoModelForMaskedLM(_AutoModel):
    """A vocabulary distribution per position: ``<Family>ForMaskedLM``."""

    task = "masked_lm"


class AutoModelForQuestionAnswering(_AutoModel):
    """Start and end logits of an answer span: ``<Family>ForQuestionAnswering``."""

    task = "question_answering"


class AutoModelForMultipleChoice(_AutoModel):
    """One score per choice of ``[batch, choices, seq]`` inputs: ``<Family>ForMultipleChoice``."""

    task = "multiple_choice"


class AutoConfig:
    """``AutoConfig.from_pretrained(folder)``: the config class of the folder's ``model_type``."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> BertConfig:
        from .config import config_class_for

        folder = resolve_pretrained(name_or_path)
        return config_class_for(read_model_type(folder), os.path.join(folder, "config.json")).from_pretrained(
            folder, **overrides)


class AutoTokenizer:
    """The tokenizer of a folder's family: byte-level BPE for RoBERTa, WordPiece for the others.

    ``model_type`` comes from ``config.json``; without one, ``vocab.json`` + ``merges.txt`` or a
    BPE ``tokenizer.json`` mean RoBERTa's tokenizer, anything else BERT's.
    """

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        folder = resolve_pretrained(name_or_path)
        model_type = read_model_type(folder)
        if model_type is None:
            model_type = "roberta" if _looks_bpe(folder) else "bert"
        if model_type not in TOKENIZERS:
            raise ConfigError(f"{os.path.join(folder, 'config.json')}: model_type {model_type!r} is not supported; "
                              f"supported types: {SUPPORTED}")
        return TOKENIZERS[model_type].from_pretrained(folder, **kwargs)


def _looks_bpe(folder: str) -> bool:
    if os.path.isfile(os.path.join(folder, "merges.txt")):
        return True
    path = os.path.join(folder, "tokenizer.json")
    if os.path.isfile(path):
        import json

        with open(path, encoding="utf-8") as handle:
            return (json.load(handle).get("model") or {}).get("type") == "BPE"
    return False
