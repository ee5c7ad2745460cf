"""One request, checked once: :class:`Request` is what a caller asks (methods, options, target,
word, batching, windows), :func:`plan_request` checks it ONCE against a model and its tokenizer
and gives an immutable :class:`Plan`, which every stage of the road then reads as it is:

1. **check**: methods and options by the registry (:func:`bert_lrp.attribution.registry.check`,
   one call per request), composites against the model (``rule="tuned"``), the target, the word
   of a token classifier and the limits (batch size, tokens, window, stride) against the model;
2. **cost**: :meth:`Plan.cost`, forward rows x tokens of a batch, from each method's own
   estimate in the registry and the stacked copies of the shared pass;
3. **batches, windows, assembly**: :mod:`bert_lrp.attribution.road` (``stream_chunks``).

Every error of a wrong request is a :class:`~bert_lrp.errors.RequestError` naming its field as
the library knows it (``methods``, ``options.ig_steps``, ``target``, ``word``, ``token_index``,
``batch_size``, ``batch_tokens``, ``window``, ``stride``, ``model``): the command line shows the
field as its flag, the explorer as its JSON field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..errors import RequestError
from .explain import MethodPlan, plan_methods
from .records import ALL
from .targets import task_of

DEFAULT_METHODS: Tuple[str, ...] = ("lrp", "gradient_x_input", "gradient")
NEEDS_TOKEN_MODEL = "need a token-classification model"  # a word or token index given to another model


@dataclass
class Request:
    """How to explain: the same on every road.

    ``target``: None (the predicted label), a label name or id, or ``"all"`` (every label from
    one pass). ``options``: method options by name (``rule``, ``ig_steps``, ``shap_samples``,
    ...; see the registry). ``word`` / ``token_index``: which word a token classifier explains.
    ``windows``: explain long texts in windows (else cut them); ``stride``/``window``: window
    step and size in pieces (defaults: half a window, the model's positions). ``layers``:
    per-layer relevance; ``attentions``: each text's attention probabilities;
    ``hidden_relevance``: relevance per hidden unit in the records. Nothing is checked here:
    :func:`plan_request` checks it once."""

    methods: Sequence[str] = DEFAULT_METHODS
    target: Any = None
    options: Dict[str, Any] = field(default_factory=dict)
    word: Optional[str] = None
    token_index: Optional[int] = None
    batch_size: int = 8
    batch_tokens: Optional[int] = None
    windows: bool = True
    stride: Optional[int] = None
    window: Optional[int] = None
    layers: bool = False
    attentions: bool = False
    hidden_relevance: bool = False
    progress: bool = False
    chunk_batches: int = 16
    targets_per_example: bool = False  # the caller gives each text's target (evaluation of a token classifier)

    def settings(self) -> Dict[str, Any]:
        """What changes the results, JSON-ready (without a model: the methods and options are
        checked by the registry; :meth:`Plan.settings` is the same for a planned request)."""
        from . import registry

        return _settings(self, registry.check(self.methods, self.options))


@dataclass(frozen=True)
class Plan:
    """A :class:`Request` checked against a model, immutable: the request's fields, ``methods``
    (canonical names), ``options`` (checked, read-only), ``target`` as the model knows it (None,
    ``"all"`` or a label id), ``task``, ``labels`` (id -> name), ``limit`` (the longest sequence
    the model reads), the tokenizer's padding, and ``method_plan`` (what every batch runs)."""

    method_plan: MethodPlan
    target: Any
    asked_target: Any  # the target as the request gave it (a label name stays a name in the settings)
    word: Optional[str]
    token_index: Optional[int]
    batch_size: int
    batch_tokens: Optional[int]
    windows: bool
    stride: Optional[int]
    window: Optional[int]
    layers: bool
    attentions: bool
    hidden_relevance: bool
    progress: Any  # True/False: a bar on stderr; or one run's hook (attribution/progress.py, via the road)
    chunk_batches: int
    targets_per_example: bool
    task: str
    labels: Mapping[int, str]
    limit: int
    pad_id: int
    pad_token: str

    @property
    def methods(self) -> Tuple[str, ...]:
        return self.method_plan.choice.names

    @property
    def options(self) -> Mapping[str, Any]:
        return self.method_plan.choice.options

    def settings(self) -> Dict[str, Any]:
        """What changes the results, JSON-ready: methods, target (as asked), the options the
        methods read (defaults filled), the word, windows (``--json``, ``--jsonl``'s run file)."""
        return _settings(self, self.method_plan.choice)

    def cost(self, tokens: int, words: Sequence[int]) -> int:
        """Estimated forward rows x tokens of one batch: ``tokens`` its padded width, ``words`` the
        number of words of each of its texts (perturbation methods score coalitions of words).
        Rows per text: :meth:`~bert_lrp.attribution.explain.MethodPlan.forward_rows` (every label
        with ``target="all"``), plus one forward for the attention of the HTML views."""
        labels = len(self.labels) if self.target == ALL else 1
        rows = sum(self.method_plan.forward_rows(n, labels) + int(self.attentions) for n in words)
        return rows * tokens


def plan_request(model, tokenizer, request: Union[Request, Plan]) -> Plan:
    """``request`` checked ONCE against ``model`` and ``tokenizer`` (a Plan is returned as it is).
    Raises :class:`~bert_lrp.errors.RequestError` naming the field at fault."""
    if isinstance(request, Plan):
        return request
    method_plan = plan_methods(model, list(request.methods) if not isinstance(request.methods, str)
                               else request.methods, dict(request.options or {}))
    task = task_of(model)
    _check_task(task, request)
    for name in ("batch_size", "batch_tokens", "stride", "window", "chunk_batches"):
        value = getattr(request, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise RequestError(name, f"must be a whole number of at least 1, got {value!r}")
    limit = model_limit(model, tokenizer)
    window = min(request.window or limit, limit - 2)  # [CLS] and [SEP] (<s>, </s>) frame every window
    if request.stride is not None and request.stride > window:
        raise RequestError("stride", f"{request.stride} is larger than the window ({window} pieces): pieces "
                           "between windows would be left out")
    return Plan(method_plan, parse_target(model, request.target), request.target, request.word, request.token_index,
                request.batch_size, request.batch_tokens, request.windows, request.stride, request.window,
                request.layers, request.attentions, request.hidden_relevance, request.progress,
                request.chunk_batches, request.targets_per_example, task,
                MappingProxyType(model.config.labels_by_id()), limit, int(tokenizer.pad_token_id),
                str(tokenizer.pad_token))


def _check_task(task: str, request: Request) -> None:
    """The model can explain texts, and the word of a token classifier is chosen exactly once."""
    if task == "masked_lm":
        raise RequestError("model", "explaining texts needs a sequence or token classifier; for a masked LM use "
                           "explain() with target=(position, token id) or the inspect mask command")
    chosen = [name for name in ("word", "token_index") if getattr(request, name) is not None]
    if task == "token" and not chosen and not request.targets_per_example:
        raise RequestError("word", "this is a token-classification model: choose the word to explain (word, or "
                           "token_index: a piece position)")
    if task != "token" and chosen:
        raise RequestError(chosen[0], NEEDS_TOKEN_MODEL)
    if len(chosen) == 2:
        raise RequestError("token_index", "give either word or token_index, not both")
    if request.token_index is not None and (isinstance(request.token_index, bool)
                                            or not isinstance(request.token_index, int)):
        raise RequestError("token_index", f"expected a whole number, got {request.token_index!r}")
    if request.word is not None and not isinstance(request.word, str):
        raise RequestError("word", f"expected a text, got {request.word!r}")


def parse_target(model, target: Any) -> Any:
    """None, ``"all"``, a label name of the model, or a label id (text or int) -> None, ``"all"``
    or an id; else a RequestError of field ``target``."""
    if target is None or target == ALL:
        return target
    labels = model.config.label2id
    if isinstance(target, str) and target in labels:
        return int(labels[target])
    try:
        value = int(target)
    except (TypeError, ValueError):
        raise RequestError("target", f"unknown label {target!r}; the model's labels are {', '.join(labels)}") from None
    if not 0 <= value < model.config.num_labels:
        raise RequestError("target", f"{value} is outside 0..{model.config.num_labels - 1}")
    return value


def model_limit(model, tokenizer) -> int:
    """The longest sequence (in tokens, specials included) ``model`` reads with ``tokenizer``."""
    return min(tokenizer.model_max_length, model.config.max_position_embeddings)


def _settings(request: Union[Request, Plan], choice) -> Dict[str, Any]:
    target = request.asked_target if isinstance(request, Plan) else request.target
    return {"methods": list(choice.names), "target": target, "options": choice.settings(),
            "word": request.word, "token_index": request.token_index, "windows": request.windows,
            "stride": request.stride, "window": request.window, "hidden_relevance": request.hidden_relevance}
