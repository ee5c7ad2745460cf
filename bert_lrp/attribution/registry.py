"""The one table of attribution methods: every method is declared here once, and ``explain``,
the command line, the views, ``evaluate`` and ``benchmark`` read it.

The built-in methods are declared by their modules, which ``import bert_lrp.attribution`` loads.
A method either comes from the *shared pass* (GS, GI and LRP: one forward and one backward for
all of them, see :mod:`bert_lrp.attribution.explain`) or is a function ``run(context) -> MethodResult``
(LAT, rollout, Integrated Gradients, and any method you :func:`register`).

Adding a method = one module with its ``run`` function + one :func:`register` call::

    register(Method("occlusion", "Occlusion", aliases=("loo",), run=occlusion, options=("baseline",)))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch


@dataclass
class MethodContext:
    """What a method's ``run`` gets. Tensors are ``[batch, seq]`` unless noted."""

    model: Any
    inputs: Dict[str, torch.Tensor]          # input_ids, attention_mask, token_type_ids
    target: torch.Tensor                     # [batch] class / label / vocabulary id explained
    target_position: Optional[torch.Tensor]  # [batch] token position (token classification, MLM)
    attentions: Optional[List[torch.Tensor]] = None  # per layer [batch, heads, seq, seq] (needs_attentions)
    options: Dict[str, Any] = field(default_factory=dict)  # explain()'s options for this method


@dataclass
class MethodResult:
    """``scores`` ``[batch, seq]`` (padding is zeroed by ``explain``); ``relevance`` ``[batch,
    seq, hidden]`` at the embedding output when the method has one; ``extras``: named tensors
    stored on the Explanation (e.g. IG's ``completeness_gap``)."""

    scores: torch.Tensor
    relevance: Optional[torch.Tensor] = None
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str                            # canonical: the key of Explanation.scores
    label: str                           # in terminal, HTML and tables
    aliases: Tuple[str, ...] = ()
    shared_pass: bool = False            # computed by the shared stacked forward + backward
    reduction: Optional[str] = None      # default hidden -> token reduction (methods with relevance)
    needs_attentions: bool = False       # run() reads context.attentions
    passes: str = "1"                    # forward+backward passes per explanation, as documented
    options: Tuple[str, ...] = ()        # names of explain() options it reads
    run: Optional[Callable[[MethodContext], MethodResult]] = None
    color: str = "#000000"               # in plots
    summary: str = ""                    # one line for --help


_METHODS: Dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the table (its name and aliases must be new)."""
    if not method.shared_pass and method.run is None:
        raise ValueError(f"method {method.name!r} needs a run function")
    for key in (method.name, *method.aliases):
        if key.lower() in _lookup():
            raise ValueError(f"method name {key!r} is taken by {_lookup()[key.lower()].name!r}")
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (tests register toy methods and remove them again)."""
    _METHODS.pop(get(name).name)


def _lookup() -> Dict[str, Method]:
    table = {}
    for method in _METHODS.values():
        for key in (method.name, *method.aliases):
            table[key.lower()] = method
    return table


def get(name: str) -> Method:
    """A method by name or alias (case-insensitive)."""
    try:
        return _lookup()[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown attribution method {name!r}; choose from {describe()}") from None


def all_methods() -> List[Method]:
    return list(_METHODS.values())


def describe() -> str:
    """``name (alias, ...)`` for every method, for help texts and messages."""
    return ", ".join(m.name + (f" ({', '.join(m.aliases)})" if m.aliases else "") for m in all_methods())


def label(name: str) -> str:
    """The display label of a method; unknown names (e.g. ``random``) are shown as they are."""
    method = _lookup().get(name.lower())
    return method.label if method else name


def color(name: str) -> str:
    method = _lookup().get(name.lower())
    return method.color if method else "#7f7f7f"
