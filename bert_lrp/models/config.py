"""BERT configuration: reads Hugging Face ``config.json`` and Google's ``bert_config.json``."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional

from .._io import atomic_write_text
from ..errors import BertLrpError

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh", "silu", "swish")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


class ConfigError(BertLrpError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder and its heads.

    Field names follow Hugging Face ``BertConfig``; Google's ``bert_config.json`` uses the same
    names, so both load with :meth:`from_json_file`. Unknown keys are kept in ``extra`` and
    written back, so a round trip through JSON loses nothing.
    """

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
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)
        self.validate()

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
        """Raise :class:`ConfigError` naming the first inconsistent value."""
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads} (remainder {self.hidden_size % self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ConfigError(f"config field {name} must be in [0, 1), got {value!r}")
        if self.num_labels < 1:
            raise ConfigError(f"num_labels must be >= 1, got {self.num_labels}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type {self.problem_type!r} is not one of {PROBLEM_TYPES}")
        if self.layer_norm_eps <= 0:
            raise ConfigError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")

    # --------------------------------------------------------------------- I/O
    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "BertConfig":
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in values.items() if k in known}
        extra = dict(values.get("extra", {}))
        extra.update({k: v for k, v in values.items() if k not in known and k != "extra"})
        if "num_labels" not in values and "_num_labels" in values:
            kwargs["num_labels"] = values["_num_labels"]
        return cls(**kwargs, extra=extra)

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
        config = cls.from_json_file(path)
        values = config.to_dict()
        if "num_labels" in overrides and "id2label" not in overrides:
            if len(values["id2label"]) != overrides["num_labels"]:
                values["id2label"] = None
        values.update(overrides)
        return cls.from_dict(values)

    def to_dict(self) -> Dict[str, Any]:
        values = asdict(self)
        extra = values.pop("extra")
        values.update(extra)
        values["id2label"] = {str(k): v for k, v in self.labels_by_id().items()}
        values["label2id"] = self.label2id
        values.setdefault("model_type", "bert")
        values.setdefault("architectures", None)
        return values

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(os.path.join(directory, "config.json"), self.to_json_string())

    def copy(self, **changes: Any) -> "BertConfig":
        values = self.to_dict()
        values.update(changes)
        return BertConfig.from_dict(values)

    def token_labels(self) -> List[str]:
        return [self.labels_by_id()[i] for i in range(self.num_labels)]
