"""The one table of attribution methods: every method is declared here once, with its options, and
``explain``, the command line, the JSON settings, the views, ``evaluate`` and ``benchmark`` read it.

A method is either read from the *shared pass* (it names a :class:`~bert_lrp.rules.composites.Composite`
and how to read the signal at the embedding output: GS, GI and every LRP preset share one stacked
forward and one backward, see :mod:`bert_lrp.attribution.explain`) or is a function
``run(context) -> MethodResult`` (LAT, rollout, IG, occlusion, SHAP, LIME, SmoothGrad, ...).

Adding a method = one module with its ``run`` function and one :func:`register` call; its options
become command-line flags (``--my-option``), ``explain(..., my_option=3)`` keywords and entries of
the JSON settings, with no other edit::

    STRENGTH = Option("toy_strength", int, 1, "how strong", minimum=1)
    register(Method("toy", "Toy", run=toy, options=(STRENGTH,)))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..errors import RequestError

READOUTS = ("gradient", "gradient_x_input", "relevance")
METHODS_FIELD = "methods"


class OptionError(RequestError):
    """A method option with a wrong name or value: a :class:`~bert_lrp.errors.RequestError` whose
    field is ``options.<name>`` (the command line shows the option's flag; exit code 2)."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"options.{option}", message)


@dataclass(frozen=True)
class Option:
    """One option of one or more methods: ``name`` is the key of ``explain(options=...)`` and of
    the JSON settings; the command-line flag is ``--`` + the name with dashes (:attr:`flag`).

    ``kind`` is ``int``, ``float``, ``str`` or ``bool``; ``minimum``/``maximum`` bound numbers
    (inclusive), ``choices`` bound strings; ``accepts`` lets the Python API pass objects the
    command line cannot (e.g. a :class:`~bert_lrp.rules.composites.Composite` as ``rule``)."""

    name: str
    kind: type
    default: Any
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Tuple[str, ...] = ()
    accepts: Tuple[type, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` converted to the option's kind and checked against its range; raises
        :class:`OptionError` naming the option."""
        if self.accepts and isinstance(value, self.accepts):
            return value
        try:
            if self.kind is bool:
                if isinstance(value, str) and value.lower() in ("0", "1", "true", "false", "yes", "no"):
                    value = value.lower() in ("1", "true", "yes")
                elif not isinstance(value, (bool, int)):
                    raise ValueError
                return bool(value)
            if self.kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                if isinstance(value, bool):
                    raise ValueError
                converted = int(value)
            elif self.kind is float:
                converted = float(value)
                if not math.isfinite(converted):
                    raise ValueError
            else:
                converted = self.kind(value)
        except (TypeError, ValueError):
            raise OptionError(self.name, f"expected {self._describe()}, got {value!r}") from None
        if self.choices and converted not in self.choices:
            raise OptionError(self.name, f"{value!r} is not one of {', '.join(self.choices)}")
        if self.minimum is not None and converted < self.minimum or self.maximum is not None and converted > self.maximum:
            raise OptionError(self.name, f"{value!r} is outside {self._range()}")
        return converted

    def _describe(self) -> str:
        names = {int: "a whole number", float: "a finite number", str: "a text", bool: "true or false"}
        text = names.get(self.kind, self.kind.__name__)
        return text + (f" in {self._range()}" if self.minimum is not None or self.maximum is not None else "")

    def _range(self) -> str:
        low = "-inf" if self.minimum is None else _number(self.minimum)
        high = "inf" if self.maximum is None else _number(self.maximum)
        return f"{low}..{high}"


def _number(value: float) -> str:
    """A bound as written: integers with thousands separators (2,147,483,647), floats short."""
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


@dataclass
class MethodContext:
    """What a method's ``run`` gets. Tensors are ``[batch, seq]`` unless noted."""

    model: Any
    inputs: Dict[str, torch.Tensor]          # input_ids, attention_mask, token_type_ids
    target: torch.Tensor                     # [batch] class / label / vocabulary id explained
    target_position: Optional[torch.Tensor]  # [batch] token position (token classification, MLM)
    attentions: Optional[List[torch.Tensor]] = None  # per layer [batch, heads, seq, seq] (needs_attentions)
    options: Dict[str, Any] = field(default_factory=dict)  # the method's options, checked, defaults filled
    word_ids: Optional[List[List[Optional[int]]]] = None   # per example and token: word number, None = special
    special_token_ids: Dict[str, int] = field(default_factory=dict)  # the tokenizer's mask, unk, pad ids
    progress: bool = False                   # a progress bar on stderr for long runs


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
    """One attribution method. Shared-pass methods give ``composite`` (options -> the Composite
    whose copy they read) and ``readout``: ``gradient`` (the signal at the embedding output),
    ``gradient_x_input`` (embedding output x signal) or ``relevance`` (LRP: relevance at the
    embedding output, its word/position/type shares and conservation). Other methods give ``run``."""

    name: str                            # canonical: the key of Explanation.scores
    label: str                           # in terminal, HTML and tables
    aliases: Tuple[str, ...] = ()
    reduction: Optional[str] = None      # default hidden -> token reduction (methods with relevance)
    needs_attentions: bool = False       # run() reads context.attentions
    passes: str = "1"                    # forward+backward passes per explanation, as documented
    options: Tuple[Option, ...] = ()     # what it reads from context.options
    run: Optional[Callable[[MethodContext], MethodResult]] = None
    composite: Optional[Callable[[Dict[str, Any]], Any]] = None  # shared pass: options -> Composite
    readout: str = "relevance"           # shared pass: see the class docstring
    rows: Optional[Callable[[Dict[str, Any], int], int]] = None  # run(): see forward_rows
    color: str = "#000000"               # in plots
    summary: str = ""                    # one line for --help

    @property
    def shared_pass(self) -> bool:
        return self.composite is not None

    def forward_rows(self, options: Dict[str, Any], words: int) -> int:
        """Rows this method's ``run`` sends through the model for one text of ``words`` words, with
        its ``options`` (defaults filled): the method's own ``rows`` estimate (e.g. IG: steps + 2;
        SHAP: its coalitions), 0 for a method that gives none (it runs no forward of its own).
        Shared-pass methods cost their composite's stacked copies (:mod:`.explain`), not rows here."""
        return 0 if self.rows is None else int(self.rows(options, words))


_METHODS: Dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the table (its name and aliases must be new; an option it shares by
    name with another method must be the same option)."""
    if method.composite is None and method.run is None:
        raise ValueError(f"method {method.name!r} needs a run function or a composite (shared pass)")
    if method.readout not in READOUTS:
        raise ValueError(f"method {method.name!r}: readout must be one of {', '.join(READOUTS)}")
    for key in (method.name, *method.aliases):
        if key.lower() in _lookup():
            raise ValueError(f"method name {key!r} is taken by {_lookup()[key.lower()].name!r}")
    known = all_options()
    for option in method.options:
        if option.name in known and known[option.name] != option:
            raise ValueError(f"method {method.name!r}: option {option.name!r} differs from the option of that "
                             "name another method declares; share the Option object")
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
    except (KeyError, AttributeError):
        raise RequestError(METHODS_FIELD, f"unknown method {name!r}; choose from {describe()}") from None


def canonical(names: Iterable[str]) -> List[str]:
    """Canonical names of ``names`` (aliases resolved, repeats dropped, order kept)."""
    out: List[str] = []
    for name in names:
        method = get(name).name
        if method not in out:
            out.append(method)
    return out


def all_methods() -> List[Method]:
    return list(_METHODS.values())


def all_options() -> Dict[str, Option]:
    """Every option of every registered method, by name (each once)."""
    return {o.name: o for m in _METHODS.values() for o in m.options}


def options_of(methods: Sequence[str]) -> Dict[str, Option]:
    """The options the given methods read, by name."""
    return {o.name: o for name in methods for o in get(name).options}


def check_options(given: Dict[str, Any]) -> Dict[str, Any]:
    """``given`` with every value checked by its option; a name no registered method declares
    raises :class:`OptionError` naming it."""
    known = all_options()
    unknown = sorted(k for k in given if k not in known)
    if unknown:
        raise OptionError(str(unknown[0]), f"unknown method option {unknown[0]!r}; the registered methods' options "
                          f"are {', '.join(sorted(known))}")
    return {k: known[k].check(v) for k, v in given.items()}


@dataclass(frozen=True)
class MethodChoice:
    """The methods of one request and their options, checked once by :func:`check`: ``methods``
    the registered entries (canonical, no repeats, in the order asked), ``options`` every option
    given, converted and range-checked (read-only)."""

    methods: Tuple[Method, ...]
    options: Mapping[str, Any]

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(m.name for m in self.methods)

    def options_of(self, method: Method) -> Dict[str, Any]:
        """``method``'s options: the given values, defaults for the others."""
        return method_options(method, dict(self.options))

    def settings(self) -> Dict[str, Any]:
        """Every option the methods read (defaults filled), JSON-ready (objects as text)."""
        found: Dict[str, Any] = {}
        for method in self.methods:
            for key, value in self.options_of(method).items():
                found[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        return found


def check(methods: Iterable[str], options: Optional[Dict[str, Any]] = None) -> MethodChoice:
    """THE check of a request's methods and options (every road calls it once per request):
    names or aliases -> registered methods, options by name, kind and range. Raises
    :class:`~bert_lrp.errors.RequestError` with field ``methods`` or ``options.<name>``."""
    names = None if isinstance(methods, str) else list(methods)
    if names is None or not all(isinstance(m, str) for m in names):
        raise RequestError(METHODS_FIELD, f"expected a list of method names, got {methods!r}")
    chosen: Tuple[Method, ...] = ()
    for name in names:  # aliases resolved, repeats dropped, order kept
        method = get(name)
        chosen += () if any(m.name == method.name for m in chosen) else (method,)
    if not chosen:
        raise RequestError(METHODS_FIELD, f"no attribution method requested; choose from {describe()}")
    return MethodChoice(chosen, MappingProxyType(check_options(dict(options or {}))))


def method_options(method: Method, given: Dict[str, Any]) -> Dict[str, Any]:
    """The values of ``method``'s options: ``given`` (already checked) where present, else defaults."""
    return {o.name: given.get(o.name, o.default) for o in method.options}


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
