"""Model outputs that read like transformers' ``ModelOutput``: by attribute, by key, by position, or
as a tuple (``to_tuple()``). Iterating one yields its keys, as iterating transformers' (a dict) does."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterator, Optional, Tuple

import torch


class ModelOutput:
    """Base class: the keys, indexing with an int and ``to_tuple`` skip the fields that are None.

    Iterating yields the keys (``list(out) == ["loss", "logits"]``), as transformers' outputs
    (dicts); unpack the values with ``loss, logits = out.to_tuple()`` or read them by attribute."""

    def to_tuple(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def keys(self) -> Tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.to_tuple())

    def values(self) -> Tuple[Any, ...]:
        return self.to_tuple()

    def items(self) -> Tuple[Tuple[str, Any], ...]:
        return tuple(zip(self.keys(), self.to_tuple()))

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __getitem__(self, key: int | slice | str) -> Any:
        """By key (``output["logits"]``; a field that is None is absent, as in transformers) or
        by position among the fields that are not None (``output[0]``)."""
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Optional[torch.Tensor] = None
    pooler_output: Optional[torch.Tensor] = None
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    attentions: Optional[Tuple[torch.Tensor, ...]] = None
    # transformers' decoder fields: always None (an encoder has no cache and no cross-attention)
    past_key_values: None = None
    cross_attentions: None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    attentions: Optional[Tuple[torch.Tensor, ...]] = None


TokenClassifierOutput = SequenceClassifierOutput
MaskedLMOutput = SequenceClassifierOutput
MultipleChoiceModelOutput = SequenceClassifierOutput
NextSentencePredictorOutput = SequenceClassifierOutput


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    """``start_logits`` / ``end_logits`` ``[batch, seq]``: where the answer span starts and ends."""

    loss: Optional[torch.Tensor] = None
    start_logits: Optional[torch.Tensor] = None
    end_logits: Optional[torch.Tensor] = None
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    attentions: Optional[Tuple[torch.Tensor, ...]] = None

    @property
    def logits(self) -> Optional[torch.Tensor]:
        """Start and end logits side by side, ``[batch, seq, 2]`` (what ``explain`` reads)."""
        if self.start_logits is None or self.end_logits is None:
            return None
        return torch.stack([self.start_logits, self.end_logits], dim=-1)


@dataclass
class PreTrainingOutput(ModelOutput):
    loss: Optional[torch.Tensor] = None
    prediction_logits: Optional[torch.Tensor] = None
    seq_relationship_logits: Optional[torch.Tensor] = None
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    attentions: Optional[Tuple[torch.Tensor, ...]] = None

    @property
    def logits(self) -> Optional[torch.Tensor]:
        return self.prediction_logits
