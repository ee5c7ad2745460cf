"""A transformers model in memory as ours, and ours as transformers': the same ``nn.Parameter``
objects (no copy, nothing written to disk), so training one trains the other.

``from_transformers`` needs no import of transformers (the class is found by its name);
``to_transformers`` imports it when called (it is not a dependency of bert-lrp).
"""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from .auto import MODELS
from .bert import BertForNextSentencePrediction, BertForPreTraining
from .checkpoint import CheckpointError
from .config import as_config

# class name -> our class (transformers' classes of the same name hold the same weights)
CLASSES: Dict[str, type] = {cls.__name__: cls for tasks in MODELS.values() for cls in tasks.values()}
CLASSES.update({cls.__name__: cls for cls in (BertForPreTraining, BertForNextSentencePrediction)})


def from_transformers(model: nn.Module) -> nn.Module:
    """Our model of the class of transformers' ``model`` (``BertForSequenceClassification``,
    ``RobertaModel``, ...), holding ``model``'s own Parameters; its config is read as ours, its
    mode (train/eval) kept. Raises :class:`CheckpointError` for a class we do not have or a
    parameter we would not use."""
    name = type(model).__name__
    if name not in CLASSES:
        raise CheckpointError(f"from_transformers: no bert-lrp class for {name}; supported: {', '.join(sorted(CLASSES))}")
    config = as_config(model.config)
    with torch.device("meta"):  # no memory, no initialisation: every Parameter is replaced below
        ours = CLASSES[name](config)
    share_parameters(model, ours, f"from_transformers({name})")
    return ours.train(model.training)


def to_transformers(model: nn.Module) -> nn.Module:
    """transformers' model of our ``model``'s class, holding our Parameters (imports transformers)."""
    try:
        import transformers
    except ImportError as error:  # an optional peer
        raise CheckpointError("to_transformers needs the transformers package (pip install transformers)") from error
    name = type(model).__name__.replace("Legacy", "", 1)
    theirs_class = getattr(transformers, name, None)
    config_class = getattr(transformers, type(model.config).__name__, None)
    if theirs_class is None or config_class is None:
        raise CheckpointError(f"to_transformers: transformers has no {name} / {type(model.config).__name__}")
    values = model.config.to_dict()
    values.pop("model_type", None)
    config = config_class(**values, attn_implementation=model.config.attn_implementation)
    theirs = theirs_class(config)
    share_parameters(model, theirs, f"to_transformers({name})")
    return theirs.train(model.training)


def _names_by_parameter(module: nn.Module) -> List[List[str]]:
    """The names of each distinct Parameter (a tied weight has several)."""
    groups: Dict[int, List[str]] = {}
    for name, parameter in module.named_parameters(remove_duplicate=False):
        groups.setdefault(id(parameter), []).append(name)
    return list(groups.values())


def share_parameters(source: nn.Module, target: nn.Module, what: str) -> None:
    """Put ``source``'s Parameters into ``target`` by name (a tied Parameter under any of its
    names); every Parameter of both must find its counterpart, with the same shape."""
    found = dict(source.named_parameters(remove_duplicate=False))
    used = set()
    for names in _names_by_parameter(target):
        match = next((found[n] for n in names if n in found), None)
        if match is None:
            raise CheckpointError(f"{what}: the source has no parameter {names[0]}")
        if tuple(match.shape) != tuple(target.get_parameter(names[0]).shape):
            raise CheckpointError(f"{what}: {names[0]} has shape {list(match.shape)} in the source but "
                                  f"{list(target.get_parameter(names[0]).shape)} in the target")
        for name in names:
            owner, _, attribute = name.rpartition(".")
            setattr(target.get_submodule(owner) if owner else target, attribute, match)
        used.add(id(match))
    unused = [names[0] for names in _names_by_parameter(source) if id(source.get_parameter(names[0])) not in used]
    if unused:
        raise CheckpointError(f"{what}: parameters the target does not use: {', '.join(unused)}")
