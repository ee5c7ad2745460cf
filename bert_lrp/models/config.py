"""Configurations: BERT (Hugging Face ``config.json``, Google's ``bert_config.json``) and the
families built from the same layers (RoBERTa, DistilBERT, ELECTRA), keyed by ``model_type``."""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Dict, List, Optional

from .._io import atomic_write_text
from ..errors import BertLrpError

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh", "silu", "swish")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


class ConfigError(BertLrpError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


# The keys transformers' PretrainedConfig puts on every config, with its defaults. Our configs
# read them as attributes (``config.output_hidden_states``), keep them in ``extra`` when set and
# write them back; the models read the output flags and the attention implementation from them.
TRANSFORMERS_DEFAULTS: Dict[str, Any] = {
    "output_hidden_states": False, "output_attentions": False, "return_dict": True, "is_decoder": False,
    "add_cross_attention": False, "is_encoder_decoder": False, "tie_word_embeddings": True,
    "chunk_size_feed_forward": 0, "use_cache": True, "dtype": None, "architectures": None,
    "bos_token_id": None, "eos_token_id": None, "_name_or_path": "", "_attn_implementation": None,
    "torchscript": False, "pruned_heads": {}, "tie_encoder_decoder": False, "gradient_checkpointing": False,
}
# set at run time (attention implementation, ...), never written to config.json (as transformers)
RUNTIME_KEYS = ("_attn_implementation", "_attn_implementation_autoset", "_commit_hash",
                "_experts_implementation", "_output_attentions")
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


def config_dataclass(cls: type) -> type:
    """``@dataclass`` whose ``__init__`` also takes any other keyword, as transformers' configs do:
    a key that is not a field goes to ``extra`` (``attn_implementation=`` to ``_attn_implementation``;
    a family's own names, ``ALIASES``, to the field they mean)."""
    cls = dataclass(cls)
    init = cls.__init__
    names = {f.name for f in fields(cls)}

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        extra = dict(kwargs.pop("extra", None) or {})
        for theirs, ours in cls.ALIASES.items():
            if theirs in kwargs:
                kwargs.setdefault(ours, kwargs.pop(theirs))
        if "attn_implementation" in kwargs:
            kwargs["_attn_implementation"] = kwargs.pop("attn_implementation")
        if "torch_dtype" in kwargs:
            kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
        for key in [k for k in kwargs if k not in names]:
            extra[key] = kwargs.pop(key)
        extra.pop("model_type", None)
        init(self, *args, extra=extra, **kwargs)

    cls.__init__ = __init__
    cls._field_names = frozenset(names)
    return cls


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(name: str, value: Any) -> float:
    """``value`` as a float, refusing what is not a finite number (NaN, inf, text, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"config field {name} must be a finite number, got {value!r}")
    return float(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _label_names(id2label: Any) -> Dict[int, str]:
    """``id2label`` as ``{0: name, ..., n-1: name}``: ids are integers (or their text) 0..n-1,
    names distinct strings; else :class:`ConfigError` naming the field and the value."""
    if not isinstance(id2label, dict) or not id2label:
        raise ConfigError(f"config field id2label must be a non-empty object {{id: name}}, got {_short(id2label)}")
    labels: Dict[int, str] = {}
    for key, name in id2label.items():
        try:
            number = int(key) if not isinstance(key, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or str(number) != str(key).strip():
            raise ConfigError(f"config field id2label: {key!r} is not a label id (an integer)")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config field id2label: the name of label {number} must be a non-empty string, "
                              f"got {name!r}")
        labels[number] = name
    if sorted(labels) != list(range(len(labels))):
        raise ConfigError(f"config field id2label: label ids must be 0..{len(labels) - 1} without gaps, got "
                          f"{sorted(labels)}")
    seen: Dict[str, int] = {}
    for number in sorted(labels):
        if labels[number] in seen:
            raise ConfigError(f"config field id2label: labels {seen[labels[number]]} and {number} have the same "
                              f"name {labels[number]!r}")
        seen[labels[number]] = number
    return {number: labels[number] for number in sorted(labels)}


@config_dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder and its heads.

    Field names follow Hugging Face ``BertConfig``; Google's ``bert_config.json`` uses the same
    names, so both load with :meth:`from_json_file`. Unknown keys are kept in ``extra`` and
    written back, so a round trip through JSON loses nothing. Subclasses (one per family) change
    defaults and ``model_type``; the models read only the fields declared here and
    transformers' common keys (:data:`TRANSFORMERS_DEFAULTS`, read as attributes).

    Like transformers' configs, the constructor takes any other keyword (kept in ``extra``) and an
    unknown attribute set on a config is kept there too (``config.is_decoder = True``).
    """

    model_type = "bert"  # class attribute (not a field): what config.json's model_type says
    ALIASES: ClassVar[Dict[str, str]] = {}  # a family's own key -> the field it means (DistilBERT: dim -> hidden_size)
    _field_names: ClassVar[frozenset] = frozenset()

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: Optional[float] = None
    num_labels: int = 2
    problem_type: Optional[str] = None
    id2label: Optional[Dict[int, str]] = None
    add_pooling_layer: bool = True
    do_lower_case: Optional[bool] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.id2label is not None:
            self.id2label = _label_names(self.id2label)
            self.num_labels = len(self.id2label)
        self.validate()

    # ---------------------------------------------- transformers' keys as attributes
    def __getattr__(self, name: str) -> Any:
        """``extra`` keys, a family's own names and transformers' common keys as attributes."""
        values = self.__dict__
        if name in type(self).ALIASES:
            return getattr(self, type(self).ALIASES[name])
        if "extra" in values and name in values["extra"]:
            return values["extra"][name]
        if name in TRANSFORMERS_DEFAULTS:
            return TRANSFORMERS_DEFAULTS[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        name = type(self).ALIASES.get(name, name)
        if name == "attn_implementation":
            name = "_attn_implementation"
        if name in self._field_names or isinstance(getattr(type(self), name, None), property) \
                or "extra" not in self.__dict__:
            if name == "num_labels" and self.__dict__.get("id2label") is not None and len(self.id2label) != value:
                object.__setattr__(self, "id2label", None)  # label names of another count (as transformers)
            object.__setattr__(self, name, value)
        else:
            self.extra[name] = value

    sub_configs: ClassVar[Dict[str, type]] = {}  # transformers' composite configs; ours have none

    def get_text_config(self, decoder: Optional[bool] = None, encoder: Optional[bool] = None) -> "BertConfig":
        """transformers' accessor of a composite config's text part: a text model's config is itself."""
        return self

    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict)

    @property
    def attn_implementation(self) -> str:
        """``"sdpa"`` (PyTorch's fused attention in a plain forward, the default) or ``"eager"``."""
        return self.extra.get("_attn_implementation") or "sdpa"

    # ------------------------------------------------------------------ labels
    @property
    def label2id(self) -> Dict[str, int]:
        return {label: i for i, label in self.labels_by_id().items()}

    def labels_by_id(self) -> Dict[int, str]:
        """``{id: name}``; names default to ``LABEL_i`` as in transformers."""
        return self.id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first value that would give wrong numbers: sizes
        that are not positive integers, NaN or infinite numbers, probabilities outside [0, 1),
        token ids outside the vocabulary, labels that are not ``0..n-1`` with distinct names."""
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels")
        for name in positive:
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ConfigError(f"config field {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads} (remainder {self.hidden_size % self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        probabilities = ["hidden_dropout_prob", "attention_probs_dropout_prob"]
        if self.classifier_dropout is not None:
            probabilities.append("classifier_dropout")
        for name in probabilities:
            value = _finite(name, getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"config field {name} must be in [0, 1), got {value!r}")
        if _finite("layer_norm_eps", self.layer_norm_eps) <= 0:
            raise ConfigError(f"config field layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if _finite("initializer_range", self.initializer_range) < 0:
            raise ConfigError(f"config field initializer_range must be >= 0, got {self.initializer_range!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type {self.problem_type!r} is not one of {PROBLEM_TYPES}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name) if name == "pad_token_id" else self.extra.get(name)
            if value is not None and (not _is_int(value) or not 0 <= value < self.vocab_size):
                raise ConfigError(f"config field {name} must be a token id in 0..{self.vocab_size - 1} "
                                  f"(vocab_size {self.vocab_size}), got {value!r}")
        label2id = self.extra.get("label2id")
        if label2id is not None and self.id2label is not None:
            if not isinstance(label2id, dict) or \
                    {str(k): v for k, v in label2id.items()} != {v: k for k, v in self.id2label.items()}:
                raise ConfigError(f"config fields label2id and id2label disagree: label2id {_short(label2id)}, "
                                  f"id2label {_short(self.id2label)}")

    # --------------------------------------------------------------------- I/O
    @classmethod
    def override_names(cls) -> set:
        """The keywords ``from_pretrained`` accepts as overrides: the config's fields (and
        ``label2id``; DistilBERT: also transformers' names)."""
        return {f.name for f in fields(cls)} - {"extra"} | {"label2id"}

    @classmethod
    def from_dict(cls, values: Dict[str, Any], **overrides: Any) -> "BertConfig":
        values = {**values, **overrides}
        if "num_labels" not in values and "_num_labels" in values:
            values["num_labels"] = values["_num_labels"]
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file {path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a JSON object")
        try:
            return cls.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> "BertConfig":
        """Read ``config.json`` (or Google's ``bert_config.json``) from a folder, then apply overrides."""
        directory = os.fspath(directory)
        path = directory
        if os.path.isdir(directory):
            for name in ("config.json", "bert_config.json"):
                path = os.path.join(directory, name)
                if os.path.exists(path):
                    break
        return cls.from_json_file(path).with_overrides(**overrides)

    def with_overrides(self, **overrides: Any) -> "BertConfig":
        """A copy with ``overrides`` applied, as ``from_pretrained`` applies them: a new
        ``num_labels`` without ``id2label`` drops label names of another count (else the names
        would set the count back)."""
        values = self.to_dict()
        values.update({k: v for k, v in self.extra.items() if k in RUNTIME_KEYS})
        if "label2id" not in overrides:
            values.pop("label2id", None)  # derived from id2label again when written
        if "num_labels" in overrides and "id2label" not in overrides:
            if len(values["id2label"]) != overrides["num_labels"]:
                values["id2label"] = None
        values.update(overrides)
        return type(self).from_dict(values)

    def to_dict(self) -> Dict[str, Any]:
        values = asdict(self)
        extra = values.pop("extra")
        values.update({k: v for k, v in extra.items() if k not in RUNTIME_KEYS})
        if values.get("dtype") is not None:  # a torch.dtype set at run time -> its name, as transformers
            values["dtype"] = str(values["dtype"]).replace("torch.", "")
        values["id2label"] = {str(k): v for k, v in self.labels_by_id().items()}
        values["label2id"] = self.label2id
        values["model_type"] = self.model_type
        values.setdefault("architectures", None)
        return values

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(os.path.join(directory, "config.json"), self.to_json_string())

    def copy(self, **changes: Any) -> "BertConfig":
        """A copy with ``changes`` (run-time keys such as the attention implementation kept)."""
        values = self.to_dict()
        values.update({k: v for k, v in self.extra.items() if k in RUNTIME_KEYS})
        values.update(changes)
        return type(self).from_dict(values)

    def token_labels(self) -> List[str]:
        return [self.labels_by_id()[i] for i in range(self.num_labels)]


# ------------------------------------------------------------------------ other families
@config_dataclass
class RobertaConfig(BertConfig):
    """RoBERTa: BERT's fields with RoBERTa's defaults (padding id 1, positions offset by it)."""

    model_type = "roberta"
    vocab_size: int = 50265   # other defaults as transformers' RobertaConfig (= BERT's)
    pad_token_id: int = 1


@config_dataclass
class ElectraConfig(BertConfig):
    """ELECTRA: word/position/type embeddings of ``embedding_size``, projected to ``hidden_size``."""

    model_type = "electra"
    embedding_size: int = 128
    hidden_size: int = 256
    num_attention_heads: int = 4
    intermediate_size: int = 1024

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.embedding_size, int) or self.embedding_size <= 0:
            raise ConfigError(f"config field embedding_size must be a positive integer, got {self.embedding_size!r}")


# DistilBERT's config.json names -> the BERT field each one means
DISTILBERT_NAMES = {"dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
                    "hidden_dim": "intermediate_size", "activation": "hidden_act", "dropout": "hidden_dropout_prob",
                    "attention_dropout": "attention_probs_dropout_prob"}


@config_dataclass
class DistilBertConfig(BertConfig):
    """DistilBERT: read and written with transformers' names (``dim``, ``n_layers``, ``n_heads``,
    ``hidden_dim``, ``activation``, ``dropout``, ``attention_dropout``), held as BERT's fields.
    No token types, no pooler; LayerNorm epsilon 1e-12 throughout."""

    model_type = "distilbert"
    ALIASES = DISTILBERT_NAMES
    num_hidden_layers: int = 6
    hidden_dropout_prob: float = 0.1
    seq_classif_dropout: float = 0.2
    qa_dropout: float = 0.1
    sinusoidal_pos_embds: bool = False
    add_pooling_layer: bool = False

    @classmethod
    def override_names(cls) -> set:
        return super().override_names() | set(DISTILBERT_NAMES)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "DistilBertConfig":
        values = dict(values)
        for theirs, ours in DISTILBERT_NAMES.items():
            if theirs in values:  # an override given with our name wins
                values.setdefault(ours, values.pop(theirs))
        for unused in ("type_vocab_size", "add_pooling_layer", "layer_norm_eps"):
            values.pop(unused, None)
        return super().from_dict(values)

    def to_dict(self) -> Dict[str, Any]:
        values = super().to_dict()
        for theirs, ours in DISTILBERT_NAMES.items():
            values[theirs] = values.pop(ours)
        for unused in ("type_vocab_size", "add_pooling_layer", "layer_norm_eps"):
            values.pop(unused, None)
        return values


CONFIG_CLASSES = {c.model_type: c for c in (BertConfig, RobertaConfig, DistilBertConfig, ElectraConfig)}


def config_class_for(model_type: Optional[str], source: str = "config.json") -> type:
    """The config class of a ``model_type`` (None: BERT, as Google's bert_config.json has none)."""
    if model_type is None:
        return BertConfig
    if model_type not in CONFIG_CLASSES:
        raise ConfigError(f"{source}: model_type {model_type!r} is not supported; supported types: "
                          f"{', '.join(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[model_type]


def read_model_type(directory: str | os.PathLike) -> Optional[str]:
    """``model_type`` from a folder's ``config.json`` (None if absent, e.g. Google's bert_config.json)."""
    path = os.path.join(os.fspath(directory), "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {path} is not valid JSON: {error}") from None
    return values.get("model_type") if isinstance(values, dict) else None


def as_config(config: Any) -> BertConfig:
    """Our config of ``config``: ours as is; any other object with ``to_dict()`` and a supported
    ``model_type`` (transformers' ``BertConfig``, ``RobertaConfig``, ``DistilBertConfig``,
    ``ElectraConfig``; duck typing, transformers is never imported) read as our family's config,
    every key kept, its attention implementation too."""
    if isinstance(config, BertConfig):
        return config
    to_dict = getattr(config, "to_dict", None)
    if not callable(to_dict):
        raise ConfigError(f"a model needs a config (ours or transformers'), got {type(config).__name__}")
    values = dict(to_dict())
    model_type = values.get("model_type") or getattr(config, "model_type", None)
    implementation = getattr(config, "_attn_implementation", None)
    if implementation is not None:
        values["_attn_implementation"] = implementation
    return config_class_for(model_type, source=type(config).__name__).from_dict(values)
