"""Layer ablation on a model: run it without some encoder layers, or train it with some frozen.

Layers are numbered **1 to L** (``config.num_hidden_layers``), as on the command line
(``bert-lrp evaluate --skip-layers 6``, ``bert-lrp train --freeze-layers 1,2``): layer ``k`` is
``model.bert.encoder.layer[k - 1]`` and its output is ``hidden_states[k]``.

* :func:`skip_layers` is a context manager that temporarily replaces the encoder's
  ``nn.ModuleList`` of layers by one holding only the kept layers (the same module objects, no
  copy), so a skipped layer's input goes straight to the next kept layer; the residual stream is
  unchanged otherwise. ``config.num_hidden_layers`` follows for the duration. Everything is
  restored on exit, also after an exception. This is the same as deleting the layer from a
  transformers model (``del model.bert.encoder.layer[k - 1]``), which the tests check.
* :func:`freeze_layers` sets ``requires_grad = False`` on every parameter of the chosen layers
  (an optimizer built afterwards leaves them out; :class:`bert_lrp.training.trainer.Trainer`
  builds it after freezing).
* :func:`parse_layers` / :func:`check_layers` read and check layer numbers (``1,2``, ``1-3``).

The accuracy of a classifier with layers removed is :func:`bert_lrp.evaluation.ablation.accuracy`;
:mod:`bert_lrp.ablate` re-exports both modules. Nothing here is a second model implementation:
the model's own layers run, fewer of them.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, List, Optional, Tuple

from torch import nn

from ..errors import RequestError

__all__ = ["skip_layers", "freeze_layers", "parse_layers", "check_layers", "encoder_layers"]


def encoder_layers(model: nn.Module) -> Tuple[nn.Module, str]:
    """The module that holds the layers as ``.layer`` (``model.bert.encoder`` for the task models,
    ``model.encoder`` for a bare ``BertModel``) and a name for messages."""
    prefix = getattr(model, "base_model_prefix", "") or "bert"  # roberta, distilbert, electra: their encoders
    for path in (f"{prefix}.encoder", f"{prefix}.transformer", "bert.encoder", "encoder", "transformer"):
        owner: Optional[nn.Module] = model
        for part in path.split("."):
            owner = getattr(owner, part, None)
            if owner is None:
                break
        if owner is not None and isinstance(getattr(owner, "layer", None), nn.ModuleList):
            return owner, f"{path}.layer"
    raise TypeError(f"{type(model).__name__} has no encoder with a .layer ModuleList (looked for "
                    "model.bert.encoder.layer and model.encoder.layer)")


def check_layers(layers: Iterable[int], count: int, field: str = "layers") -> List[int]:
    """``layers`` as a sorted list of distinct 1-based layer numbers; a number outside ``1..count``
    is a :class:`~bert_lrp.errors.RequestError` of ``field`` (the command line shows its flag)."""
    chosen = sorted({int(layer) for layer in layers})
    bad = [layer for layer in chosen if not 1 <= layer <= count]
    if bad:
        raise RequestError(field, f"layer {bad[0]} does not exist; the model has layers 1..{count} (1-based)")
    return chosen


def parse_layers(text: str, field: str = "layers", count: Optional[int] = None) -> List[int]:
    """``"6"``, ``"1,2"`` or ``"1-3,6"`` -> sorted distinct layer numbers (1-based). With ``count``
    the numbers are checked against ``1..count`` before any range is expanded (``1-40000000`` is
    an error at once, not a list of forty million). Errors are a :class:`~bert_lrp.errors.RequestError`
    of ``field``, the message starting with the text given."""
    spans: List[tuple] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        first, dash, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise RequestError(field, f"{text!r}: expected layer numbers such as 6, 1,2 or 1-3 "
                                      f"(1-based), got {part!r}") from None
        if high < low:
            raise RequestError(field, f"{text!r}: the range {part} is empty")
        if low < 1:
            raise RequestError(field, f"{text!r}: layers are numbered from 1")
        if count is not None and high > count:
            raise RequestError(field, f"layer {max(low, count + 1)} does not exist; the model has layers "
                                      f"1..{count} (1-based)")
        spans.append((low, high))
    if not spans:
        raise RequestError(field, "is empty; give layer numbers such as 6, 1,2 or 1-3 (1-based)")
    if count is None and any(high - low > 100_000 for low, high in spans):
        raise RequestError(field, f"{text!r}: a range of more than 100,000 layers")
    layers = sorted({layer for low, high in spans for layer in range(low, high + 1)})
    if count is not None and len(layers) == count:
        raise RequestError(field, f"{text!r}: names all {count} layers; at least one must stay")
    return layers


@contextlib.contextmanager
def skip_layers(model: nn.Module, layers: Iterable[int], field: str = "layers") -> Iterator[nn.Module]:
    """Within the block, ``model`` runs without the encoder layers ``layers`` (1-based).

    ``with skip_layers(model, [6]): logits = model(**batch).logits`` gives the logits
    ``[batch, num_labels]`` of the model without its layer 6; ``hidden_states`` then has
    ``L - len(layers) + 1`` entries and ``attentions`` ``L - len(layers)``. An empty ``layers``
    changes nothing. The original ``ModuleList`` and ``config.num_hidden_layers`` are put back on
    exit.
    """
    owner, _ = encoder_layers(model)
    original: nn.ModuleList = owner.layer
    chosen = set(check_layers(layers, len(original), field))
    if len(chosen) == len(original):
        raise RequestError(field, f"skipping all {len(original)} layers leaves no encoder; at least one must stay")
    config = getattr(model, "config", None)
    original_count = getattr(config, "num_hidden_layers", None)
    if not chosen:
        yield model
        return
    owner.layer = nn.ModuleList(layer for number, layer in enumerate(original, 1) if number not in chosen)
    if original_count is not None:
        config.num_hidden_layers = len(owner.layer)
    try:
        yield model
    finally:
        owner.layer = original
        if original_count is not None:
            config.num_hidden_layers = original_count


def freeze_layers(model: nn.Module, layers: Iterable[int], field: str = "layers") -> List[str]:
    """Set ``requires_grad = False`` on every parameter of the encoder layers ``layers`` (1-based);
    returns the names of the frozen parameters (``bert.encoder.layer.0.attention...``)."""
    owner, prefix = encoder_layers(model)
    frozen: List[str] = []
    for number in check_layers(layers, len(owner.layer), field):
        for name, parameter in owner.layer[number - 1].named_parameters():
            parameter.requires_grad_(False)
            frozen.append(f"{prefix}.{number - 1}.{name}")
    return frozen
