"""``explain``: every registered method on a batch; the shared-pass methods (GS, GI, every LRP
preset) from one forward and one backward pass, the others (LAT, rollout, IG, ...) beside.

Conventions. Token ``scores[method]`` are ``[batch, seq]`` floats, exactly 0 at padding.
``relevance[method]`` is ``[batch, seq, hidden]`` at the embedding output (the input of the first
encoder layer, where Wu & Ong 2021 take GS and GI). For LRP, ``embedding_shares[method]`` splits
the relevance that enters the embedding LayerNorm into its three summands (word, position,
token type), each ``[batch, seq, hidden]``; LRP token scores sum all three, so they account for
all the relevance that reaches the input.

How several methods share one pass: each shared-pass method names a composite (the plain
gradient for GS/GI, a preset for LRP); the batch is stacked, one slice per distinct composite,
and each rule Function applies its slice's rule in the single backward pass. Methods that name
the same composite read the same slice (GS and GI; ``lrp`` and ``lrp:attnlrp``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import RequestError
from ..models.sites import linear_sites
from ..models.tuned import TunedCompositeError
from ..rules.composites import Composite, RuleSet, get_composite
from ..rules.functions import stack_copies
from . import method_scores, registry
from .heatmaps import notebook_html, show_html
from .registry import Method, MethodContext
from .choices import MULTIPLE_CHOICE, explain_choices
from .targets import Target, logits_of, resolve_target, select, task_of
from .transformers_inputs import as_encoding
from .words import word_numbers

REDUCTIONS = ("l2", "squared", "sum", "abs_sum")
from . import shared_pass, attention, integrated_gradients  # noqa: E402,F401  (they declare their methods)


class BackwardCounter:
    """Counts the passes through the model's output: forwards, and backwards (signal entering the graph)."""

    def __init__(self) -> None:
        self.forward_passes = 0
        self.backward_passes = 0


class _CountingSource(torch.autograd.Function):
    """Identity on the model output; its backward counts the passes (for tests and audits)."""

    @staticmethod
    def forward(ctx, logits, counter: BackwardCounter):
        ctx.counter = counter
        counter.forward_passes += 1
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, grad):
        ctx.counter.backward_passes += 1
        return grad, None


def conservation_ratio(total: torch.Tensor, target_logit: torch.Tensor) -> torch.Tensor:
    """``total / target_logit`` per example ``[batch]``; where the target logit is exactly 0 the
    ratio is 1 if the total is 0 too (nothing to conserve, nothing found) and +/-inf otherwise."""
    zero = target_logit == 0
    ratio = total / torch.where(zero, torch.ones_like(target_logit), target_logit)
    at_zero = torch.where(total == 0, torch.ones_like(total), torch.sign(total) * torch.inf)
    return torch.where(zero, at_zero, ratio)


def relevance_at(tensor: torch.Tensor, signal: torch.Tensor, composite: Composite) -> torch.Tensor:
    """Relevance of ``tensor`` from the signal that reached it (:meth:`Composite.relevance_at`)."""
    return composite.relevance_at(tensor, signal)


@dataclass
class Explanation:
    """The result of :func:`explain` (see the module docstring for shapes and conventions). Its
    per-method fields (``scores`` ... ``extras``) are declared once in
    :data:`bert_lrp.attribution.method_scores.FIELDS`, which for_label, label stacking and the
    merge of separate passes go through."""

    methods: List[str]
    scores: Dict[str, torch.Tensor]
    relevance: Dict[str, torch.Tensor]
    logits: torch.Tensor
    target: torch.Tensor                      # [batch] class / label / vocabulary id explained
    target_position: Optional[torch.Tensor]   # [batch] token position (token classification, MLM)
    target_logit: torch.Tensor                # [batch] the explained output score
    attention_mask: torch.Tensor              # [batch, seq]
    embedding_shares: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)
    conservation: Dict[str, torch.Tensor] = field(default_factory=dict)  # [batch] sum(R) / target logit
    layer_scores: Dict[str, List[torch.Tensor]] = field(default_factory=dict)  # per layer [batch, seq]
    head_scores: Dict[str, List[torch.Tensor]] = field(default_factory=dict)   # per layer [batch, heads, seq]
    completeness_gap: Optional[torch.Tensor] = None  # IG: sum(attr) - (f(x) - f(baseline)), [batch]
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)  # "<method>.<name>": e.g. IG's completeness_gap
    attentions: Optional[Tuple[torch.Tensor, ...]] = None
    tokens: Optional[List[List[str]]] = None
    encoding: Optional[dict] = None
    forward_passes: int = 0
    backward_passes: int = 0
    all_labels: bool = False  # target="all": a label axis after the batch axis ([batch, labels, ...])
    label_names: Optional[Dict[int, str]] = None  # the model's id -> name of its outputs (classifiers)

    @property
    def prediction(self) -> torch.Tensor:
        """Predicted class per example ``[batch]`` (per token ``[batch, seq]`` for token models)."""
        return self.logits.argmax(-1)

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    def for_label(self, label: int) -> "Explanation":
        """With ``target="all"``: the explanation of one label, shaped as for a single target."""
        if not self.all_labels:
            raise ValueError("for_label needs an explanation made with target='all'")
        gap = None if self.completeness_gap is None else self.completeness_gap[:, label]
        return replace(self, methods=list(self.methods), target=self.target[:, label],
                       target_logit=self.target_logit[:, label], completeness_gap=gap, all_labels=False,
                       **method_scores.for_label(self, label))

    def word_scores(self, method: str, index: int = 0) -> List[dict]:
        """Scores of example ``index`` merged over word pieces: a list of
        ``{"word", "start", "end", "sequence", "score", "pieces"}`` (needs the tokenizer's Encoding)."""
        from .words import merge_word_pieces

        if self.encoding is None or not hasattr(self.encoding, "word_ids"):
            raise ValueError("word-level scores need the batch returned by BertTokenizer (it carries offsets)")
        return merge_word_pieces(self.scores[_canonical(method)][index], self.encoding, index)

    def output_name(self, output: int) -> str:
        """The name of output ``output``: the model's label name, or ``output <id>``."""
        names = self.label_names or {}
        return names.get(output, f"output {output}")

    def predicted_outputs(self) -> List[int]:
        """The predicted output per example (at the explained position for token models) ``[batch]``."""
        logits = self.logits
        if self.target_position is not None:
            logits = logits[torch.arange(logits.shape[0]), self.target_position.long()]
        return logits.argmax(-1).tolist()

    def __repr__(self) -> str:
        """One line: methods, batch and length, the predictions by name (never the tensors)."""
        batch, seq = self.attention_mask.shape
        shown = [self.output_name(p) for p in self.predicted_outputs()[:4]]
        more = ", ..." if batch > 4 else ""
        return (f"Explanation(methods={list(self.methods)}, batch={batch}, seq={seq}, "
                f"predicted=[{', '.join(shown)}{more}]{', target=all' if self.all_labels else ''})")

    def _repr_html_(self) -> str:
        """Jupyter's view: per example (per label with ``target="all"``) the predicted and explained
        outputs and per method the words coloured by relevance (word pieces on hover), with the
        component of the HTML report and the explorer. Outputs carry the model's label names
        (``label_names``; ``output <id>`` where there are none, e.g. a masked LM)."""
        return notebook_html([view for index in range(self.logits.shape[0]) for view in self._views(index)])

    def show(self) -> None:
        """Display :meth:`_repr_html_` in the running notebook (needs IPython)."""
        show_html(self._repr_html_())

    def _views(self, index: int) -> List[dict]:
        """Example ``index`` as flat records for :func:`bert_lrp.attribution.heatmaps.example_html`."""
        if self.all_labels:
            return [view for label in range(self.target.shape[1]) for view in self.for_label(label)._views(index)]
        from .words import merge_word_pieces

        mask = self.attention_mask[index]
        tokens = list(self.tokens[index]) if self.tokens else [f"#{p}" for p in range(mask.shape[0])]
        if self.encoding is not None:
            merged = merge_word_pieces([0.0] * len(tokens), self.encoding, index)
            words = [{"word": w["word"], "pieces": w["positions"]} for w in merged]
        else:  # no Encoding: every token the model read is a word
            words = [{"word": tokens[p], "pieces": [p]} for p in mask.nonzero().flatten().tolist()]
        logits = self.logits[index]
        if self.target_position is not None:
            logits = logits[int(self.target_position[index])]
        probabilities = torch.softmax(logits.double(), -1)
        top = probabilities.topk(min(5, probabilities.shape[0]))
        scores = {}
        for method in self.methods:
            values = self.scores[method][index].tolist()
            scores[method] = {"tokens": values, "words": [sum(values[p] for p in w["pieces"]) for w in words]}
        return [{"text": " ".join(w["word"] for w in words), "tokens": tokens, "words": words,
                 "methods": list(self.methods), "prediction": self.output_name(int(logits.argmax())),
                 "target": self.output_name(int(self.target[index])),
                 "probabilities": {self.output_name(k): p for p, k in zip(top.values.tolist(), top.indices.tolist())},
                 "scores": scores, "conservation": {m: float(v[index]) for m, v in self.conservation.items()}}]


def _canonical(method: str) -> str:
    return registry.get(method).name


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring gradients for the duration (attribution needs input gradients only)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def reduce_tokens(relevance: torch.Tensor, reduction: str) -> torch.Tensor:
    """``[batch, seq, hidden]`` -> ``[batch, seq]`` by ``l2`` norm, ``squared`` norm, signed ``sum``
    or ``abs_sum``."""
    if reduction == "l2":
        return relevance.norm(dim=-1)
    if reduction == "squared":
        return relevance.pow(2).sum(-1)
    if reduction == "sum":
        return relevance.sum(-1)
    if reduction == "abs_sum":
        return relevance.abs().sum(-1)
    raise RequestError("reduction", f"unknown reduction {reduction!r}; choose from {', '.join(REDUCTIONS)}")


def _model_inputs(batch: dict) -> Dict[str, torch.Tensor]:
    if "input_ids" not in batch:
        raise ValueError("the batch needs input_ids (pass the dict BertTokenizer returns)")
    ids = batch["input_ids"]
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else (mask.unsqueeze(0) if mask.dim() == 1 else mask)
    types = batch.get("token_type_ids")
    types = torch.zeros_like(ids) if types is None else (types.unsqueeze(0) if types.dim() == 1 else types)
    if mask.shape != ids.shape or types.shape != ids.shape:
        raise ValueError(f"attention_mask {list(mask.shape)} / token_type_ids {list(types.shape)} "
                         f"must have the shape of input_ids {list(ids.shape)}")
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def explain(model: nn.Module, batch: dict, methods: Sequence[str] = ("lrp",), target: Target = None,
            rule: Union[None, str, Composite] = None, reduction: Union[None, str, Dict[str, str]] = None,
            layers: bool = False, options: Optional[Dict[str, Any]] = None, schedule: str = "auto",
            progress: bool = False, **method_options: Any) -> Explanation:
    """Explain ``model``'s output on ``batch`` with one or more methods.

    Args:
        model: a ``<Family>ForSequenceClassification``, ``<Family>ForTokenClassification``,
            ``<Family>ForQuestionAnswering``, ``<Family>ForMaskedLM`` or ``<Family>ForMultipleChoice``
            (BERT, RoBERTa, DistilBERT, ELECTRA; multiple choice: see :mod:`.choices`).
        batch: the tokenizer's Encoding (``[batch, seq]`` tensors; its word ids and sequence ids
            tell the word-level methods which pieces form a word) or a dict of tensors.
        methods: names or aliases from :mod:`bert_lrp.attribution.registry`: ``gradient`` (gs),
            ``gradient_x_input`` (gi), ``lrp`` (preset from ``rule``), ``lrp:attnlrp``,
            ``lrp:cp-lrp``, ``lrp:bert-lrp``, ``lat``, ``rollout``, ``integrated_gradients`` (ig),
            ``occlusion``, ``shap``, ``lime``, ``smoothgrad``, ... All shared-pass methods
            together cost one forward + one backward.
        target: sequence classification: None (predicted class), a class id or label name, or one
            per example; token classification / masked LM: ``(position, label_or_None)`` or a list.
            multiple choice: the chosen choice (None: the predicted one), or one per example.
            ``"all"`` (token classification: ``(position, "all")``): every label from the same single
            forward + backward (one stacked copy per label); the result has a label axis after the
            batch axis (scores ``[batch, labels, seq]``) and ``for_label(l)`` gives one label's view.
        rule: the ``lrp`` method's preset (``attnlrp``, ``cp-lrp``, ``bert-lrp``) or a
            :class:`Composite`; the same as ``rule=`` among the method options.
        reduction: how hidden units become token scores (``l2``, ``squared``, ``sum``, ``abs_sum``),
            one for all methods or per method; defaults: each method's (GS l2, GI sum, LRP sum, IG sum).
        layers: also return per-layer token relevance and per-head relevance at attention outputs.
        options, **method_options: the methods' options by name (``ig_steps=20``,
            ``shap_samples=512``, ...; see each method's ``options`` in the registry). A name no
            registered method declares raises an error naming it.
        schedule: shared-pass methods run as ``"stacked"`` copies in one forward + one backward,
            or ``"separate"`` passes (one per composite); ``"auto"`` stacks unless batch x length x
            hidden x layers exceeds ``STACK_LIMIT``, where separate passes were measured cheaper.
        progress: progress bars on stderr for the methods that take many passes.
    """
    batch = as_encoding(batch)  # a transformers BatchEncoding -> the Encoding read below
    if schedule not in ("auto", "stacked", "separate"):
        raise RequestError("schedule", f"must be 'auto', 'stacked' or 'separate', got {schedule!r}")
    given = {**(options or {}), **method_options, **({} if rule is None else {"rule": rule})}
    plan = plan_methods(model, methods, given, reduction)
    result = run_methods(model, batch, plan, target, layers=layers, schedule=schedule, progress=progress)
    return replace(result, label_names=output_names(model))


def output_names(model: nn.Module) -> Optional[Dict[int, str]]:
    """A classifier's ``{id: label name}`` (its config's ``id2label``); None for a masked LM (its
    outputs are the vocabulary) and a multiple-choice model (its outputs are the choices)."""
    if task_of(model) in ("masked_lm", MULTIPLE_CHOICE):
        return None
    return dict(model.config.labels_by_id())


@dataclass(frozen=True)
class MethodPlan:
    """The methods of one request, checked once (:func:`registry.check`) and resolved against a
    model: ``jobs`` the distinct composites of the shared-pass methods, each with the methods
    that read its copy; ``reductions`` hidden -> token reduction per method. Immutable: every
    batch of the request runs it as it is (:func:`run_methods`)."""

    choice: registry.MethodChoice
    jobs: Tuple[Tuple[Composite, Tuple[Method, ...]], ...]
    reductions: Mapping[str, str]

    @property
    def methods(self) -> Tuple[Method, ...]:
        return self.choice.methods

    def only(self, name: str) -> "MethodPlan":
        """The plan of one of its methods alone (``evaluate`` measures each method's cost alone)."""
        kept = tuple(m for m in self.methods if m.name == name)
        jobs = tuple((c, tuple(m for m in ms if m.name == name)) for c, ms in self.jobs)
        return MethodPlan(replace(self.choice, methods=kept), tuple((c, ms) for c, ms in jobs if ms), self.reductions)

    def forward_rows(self, words: int, labels: int = 1) -> int:
        """Rows one text sends through the model (``labels``: how many labels are explained, e.g.
        every label for ``target="all"``): the stacked copies of the shared pass (one per distinct
        composite and label, two for a composite with a Jacobian path), or one plain forward
        without shared-pass methods, plus each other method's own rows per label
        (:meth:`~bert_lrp.attribution.registry.Method.forward_rows`)."""
        shared = sum(len(c.copies) for c, _ in self.jobs) or 1
        own = sum(m.forward_rows(self.choice.options_of(m), words) for m in self.methods if not m.shared_pass)
        return labels * (shared + own)


def plan_methods(model: nn.Module, methods: Sequence[str], options: Optional[Dict[str, Any]] = None,
                 reduction: Union[None, str, Dict[str, str]] = None) -> MethodPlan:
    """Check ``methods`` and their ``options`` (once, by the registry) and resolve each shared-pass
    method's composite on ``model`` (``rule="tuned"``: the model's tuned composite). Raises
    :class:`~bert_lrp.errors.RequestError` naming the field (``methods``, ``options.<name>``,
    ``reduction``)."""
    choice = registry.check(methods, options)
    reductions = {m.name: m.reduction for m in registry.all_methods() if m.reduction}
    if isinstance(reduction, str):
        reductions = {name: reduction for name in reductions}
    elif reduction:
        reductions.update({registry.get(k).name: v for k, v in reduction.items()})
    bad = sorted(v for v in reductions.values() if v not in REDUCTIONS)
    if bad:
        raise RequestError("reduction", f"unknown reduction {bad[0]!r}; choose from {', '.join(REDUCTIONS)}")
    jobs: Dict[Composite, List[Method]] = {}  # distinct composites, each with the methods that read it
    for method in choice.methods:
        if method.shared_pass:
            field_name = "options.rule" if any(o.name == "rule" for o in method.options) else "methods"
            composite = model_composite(model, method.composite(choice.options_of(method)), field_name)
            jobs.setdefault(composite, []).append(method)
    return MethodPlan(choice, tuple((c, tuple(ms)) for c, ms in jobs.items()), MappingProxyType(reductions))


def run_methods(model: nn.Module, batch: dict, plan: MethodPlan, target: Target = None, layers: bool = False,
                schedule: str = "auto", progress: bool = False) -> Explanation:
    """:func:`explain` of an already checked :class:`MethodPlan` (the road runs one per batch)."""
    task = task_of(model)
    if task == MULTIPLE_CHOICE:  # the chosen choices, explained as one-logit sequence classifiers
        return explain_choices(model, batch, target, lambda scorer, rows, label: run_methods(
            scorer, rows, plan, label, layers=layers, schedule=schedule, progress=progress))
    inputs = _model_inputs(batch)
    mask = inputs["attention_mask"]
    jobs = {c: list(ms) for c, ms in plan.jobs}
    reductions = dict(plan.reductions)
    need_attention = any(m.needs_attentions for m in plan.methods)
    separate = [m for m in plan.methods if not m.shared_pass]
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with frozen_parameters(model):
            if jobs and _stacking_pays(schedule, list(jobs), inputs["input_ids"], model):
                result = _one_pass(model, task, inputs, target, jobs, need_attention, layers, reductions)
            elif jobs:  # one pass per composite: cheaper than stacking for large batch x length
                parts = [_one_pass(model, task, inputs, target, {c: ms}, need_attention and i == 0, layers, reductions)
                         for i, (c, ms) in enumerate(jobs.items())]
                result = _merge_passes(parts)
            elif _wants_all_labels(target):
                result = _stack_labels([_forward_only(model, task, inputs, _label_target(target, label), need_attention)
                                        for label in range(model.config.num_labels)])
            else:
                result = _forward_only(model, task, inputs, target, need_attention)
            if separate:
                result = _run_separate(model, result, separate, plan, inputs, batch, need_attention, progress)
    finally:
        if was_training:
            model.train()
    result.methods = [m.name for m in plan.methods]
    result.encoding = batch if hasattr(batch, "word_ids") else None
    result.tokens = getattr(batch, "tokens", None)
    return result


def _run_separate(model, result: "Explanation", separate: List[Method], plan: MethodPlan, inputs, batch,
                  need_attention: bool, progress: bool) -> "Explanation":
    """The methods with a ``run()`` on every explained label of ``result`` (their scores added)."""
    mask = inputs["attention_mask"]
    attentions = [a[: mask.shape[0]].detach() for a in result.attentions] if need_attention else None
    word_ids = word_numbers(batch)
    special_ids = dict(getattr(batch, "special_token_ids", None) or {})
    views = [result.for_label(l) for l in range(result.target.shape[1])] if result.all_labels else [result]
    for view in views:
        for method in separate:
            context = MethodContext(model, inputs, view.target, view.target_position, attentions,
                                    plan.choice.options_of(method), word_ids, special_ids, progress)
            _store(view, method, method.run(context), dict(plan.reductions), mask)
    return _stack_labels(views) if result.all_labels else result


TUNED = "tuned"


def model_composite(model: nn.Module, rule: Union[str, Composite], field_name: str = "options.rule") -> Composite:
    """The composite ``rule`` names: a preset, a :class:`Composite`, or ``"tuned"``: the model's
    tuned composite (``lrp_composite.json`` beside its weights, read by ``from_pretrained``;
    written by ``bert-lrp tune-lrp``). A model without one raises a RequestError of ``field_name``."""
    if rule != TUNED:
        composite = get_composite(rule)
    else:
        tuned = getattr(model, "tuned_composite", None)
        if tuned is None:
            raise RequestError(field_name, "tuned: this model has no tuned LRP composite (lrp_composite.json beside "
                               "its weights); the tune-lrp command writes one")
        try:
            composite = tuned.usable(model)
        except TunedCompositeError as error:
            raise RequestError(field_name, f"tuned: {error}") from None
    check_overrides(model, composite, field_name)
    return composite


def check_overrides(model: nn.Module, composite: Composite, field_name: str = "options.rule") -> None:
    """Each of ``composite``'s linear overrides fits ``model``: its layers within the encoder's depth
    and at least one linear layer of the model matched; each attention override's layers within the
    depth; else a RequestError of ``field_name`` naming the override (an override that would be cut
    or ignored is never applied silently)."""
    if not composite.per_layer:
        return
    depth = int(model.config.num_hidden_layers)
    for i, attention in enumerate(composite.attention_overrides):
        if attention.layers[1] > depth:
            raise RequestError(field_name, f"composite {composite.name!r}: attention_overrides[{i}].layers "
                               f"{list(attention.layers)} goes beyond the model's {depth} encoder layers (layers "
                               f"[first, last) with last <= {depth})")
    sites = set(linear_sites(model).values())
    for i, override in enumerate(composite.linear_overrides):
        where = f"composite {composite.name!r}: linear_overrides[{i}]"
        if override.layers is not None and override.layers[1] > depth:
            raise RequestError(field_name, f"{where}.layers {list(override.layers)} goes beyond the model's {depth} "
                               f"encoder layers (layers [first, last) with last <= {depth})")
        if not any(override.matches(site) for site in sites):
            kinds = sorted({site.kind for site in sites})
            raise RequestError(field_name, f"{where} (kinds {list(override.kinds) or 'all'}, layers "
                               f"{override.layers}) matches no linear layer of this model (its kinds: "
                               f"{', '.join(kinds)})")


def _store(result: "Explanation", method: Method, output, reductions: Dict[str, str], mask: torch.Tensor) -> None:
    """Put a separately computed method's output on the explanation (padding set to 0)."""
    keep = mask.unsqueeze(-1)
    if output.relevance is not None:
        result.relevance[method.name] = output.relevance * keep
        scores = reduce_tokens(output.relevance, reductions.get(method.name, "sum"))
    else:
        scores = output.scores
    result.scores[method.name] = scores * mask
    for key, value in output.extras.items():
        result.extras[f"{method.name}.{key}"] = value
        if key == "completeness_gap":
            result.completeness_gap = value


ALL_LABELS = "all"
# batch x length x hidden x layers above which schedule="auto" runs one pass per composite. Measured
# (benchmarks/results/bench_schedule_*.md, 2 threads) stacking is cheaper up to MiniLM 8 x 512 (9.4M)
# and BERT-base 4 x 512 (18.9M: 1.72x LRP stacked, 1.98x separate); beyond twice that, untested,
# separate passes keep the peak memory of one copy.
STACK_LIMIT = 40_000_000


# From this many tokens in a batch (batch x length), several composites without a Jacobian path
# share one forward of the inputs and walk the graph once each, instead of one walk of copies
# stacked along the batch (which repeats every rule Function's output and joins every signal).
# Measured (docs/performance.md, "counted in products"; MiniLM, CPU time, GS+GI+AttnLRP over AttnLRP alone): 1x16
# 1.38 stacked / 1.48 walks, 1x32 1.40 / 1.48, 2x32 1.52 / 1.51, 1x64 1.52 / 1.51, 1x128
# 1.56 / 1.51, 8x128 1.67 / 1.55: below 64 tokens the second walk's per-operation overhead
# costs more than the copies it saves.
WALK_FROM_TOKENS = 64


def _stacking_pays(schedule: str, composites: List[Composite], input_ids: torch.Tensor, model: nn.Module) -> bool:
    if len(composites) == 1 or schedule == "stacked":
        return True
    size = input_ids.numel() * model.config.hidden_size * model.config.num_hidden_layers
    return schedule == "auto" and size <= STACK_LIMIT


def _merge_passes(parts: List[Explanation]) -> Explanation:
    """Explanations of the same inputs by separate passes -> one (their methods side by side)."""
    return replace(parts[0], forward_passes=sum(p.forward_passes for p in parts),
                   backward_passes=sum(p.backward_passes for p in parts), **method_scores.merge_passes(parts))


def _label_target(target: Target, label: Optional[int]) -> Target:
    """``"all"`` -> ``label``; ``(position, "all")`` -> ``(position, label)``, also in a list."""
    if isinstance(target, tuple):
        return (target[0], label)
    if isinstance(target, list):
        return [(position, label) for position, _ in target]
    return label


def _wants_all_labels(target: Target) -> bool:
    """``target="all"``, or ``(position, "all")`` (or a list of them) for token classification."""
    if isinstance(target, str):
        return target == ALL_LABELS
    pairs = target if isinstance(target, list) else [target]
    return bool(pairs) and all(isinstance(t, tuple) and len(t) == 2 and t[1] == ALL_LABELS for t in pairs)


def _one_pass(model, task, inputs, target, jobs: Dict[Composite, List[Method]], need_attention, layers,
              reductions) -> Explanation:
    """The shared-pass methods from one forward: one copy per (composite, label) (``target="all"``:
    one per label). Without a Jacobian path (BERT-LRP's residual rule) the batch holds the inputs
    once and the graph is walked once per copy (:func:`_walk_per_copy`); with one, the copies are
    stacked along the batch (as many again for the Jacobian paths) and walked once."""
    all_labels = _wants_all_labels(target)
    if all_labels and task == "masked_lm":
        raise ValueError("target='all' is for classifiers; a masked LM has a label per vocabulary word")
    label_choices = list(range(model.config.num_labels)) if all_labels else [None]
    composites = list(jobs)
    pairs = [(c, label) for c in composites for label in label_choices]
    per_site = any(c.per_layer for c in composites)  # per-layer linear or attention rules need the layers' sites
    walks = inputs["input_ids"].numel() >= WALK_FROM_TOKENS
    rules = RuleSet.of([c for c, _ in pairs], record_head_contexts=layers,
                       sites=linear_sites(model) if per_site else None, separate_backward=walks)
    counter = BackwardCounter()
    copies, size = rules.copies, inputs["input_ids"].shape[0]
    mask = inputs["attention_mask"]
    encoder = model.base_model  # every family: embedding_parts / combine_embeddings (models/bert.py)
    word, position, token_type = encoder.embedding_parts(stack_copies(inputs["input_ids"], copies),
                                                         stack_copies(inputs["token_type_ids"], copies))
    word, position, token_type = (t.detach().requires_grad_(True) for t in (word, position, token_type))
    embedded = encoder.combine_embeddings(word, position, token_type, rules)
    output = model(attention_mask=stack_copies(mask, copies), embedding_output=embedded, rules=rules,
                   output_attentions=need_attention, output_hidden_states=layers)
    logits = _CountingSource.apply(logits_of(output), counter)
    plain_logits = logits[:size].detach()
    resolvable = (_label_target(target, None) if task == "token" else None) if all_labels else target
    predicted, positions = resolve_target(model, task, plain_logits, resolvable)
    pair_labels = [predicted if label is None else torch.full_like(predicted, label) for _, label in pairs]
    first = [sum(len(c.copies) for c, _ in pairs[:j]) for j in range(len(pairs))]  # each pair's first slice
    hidden = list(output.hidden_states[1:]) if layers else []
    heads = list(rules.head_contexts) if layers else []
    wrt = [embedded, word, position, token_type] + hidden + heads
    if rules.separate_backward:
        grads, pair_logits = _walk_per_copy(rules, logits, pairs, pair_labels, positions, wrt)
        # the readouts take each copy's rows of the inputs, as from a stacked batch
        embedded, word, position, token_type, *rest = (stack_copies(t.detach(), len(pairs)) for t in wrt)
        hidden, heads = rest[:len(hidden)], rest[len(hidden):]
    else:
        slice_labels = torch.cat([labels for (c, _), labels in zip(pairs, pair_labels) for _ in c.copies])
        score = select(logits, slice_labels, None if positions is None else stack_copies(positions, copies))
        pair_logits = [score[i * size:(i + 1) * size].detach() for i in first]
        # the backward starts from 1 (gradient signal) or from the target logit (relevance signal)
        start = torch.cat([pair_logit if c.signal == "relevance" else torch.ones_like(pair_logit)
                           for (c, _), pair_logit in zip(pairs, pair_logits) for _ in c.copies])
        # the signal enters as a weighted sum (d/d score = start exactly), not as grad_outputs=: that
        # argument makes torch import its symbolic-shapes module (sympy, ~2 s) on first use
        grads = torch.autograd.grad((score * start).sum(), wrt, allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads)]

    per_label = []
    for label in label_choices:
        j = next(j for j, (_, l) in enumerate(pairs) if l == label)
        result = Explanation(methods=[], scores={}, relevance={}, logits=plain_logits, target=pair_labels[j],
                             target_position=positions, target_logit=pair_logits[j], attention_mask=mask,
                             attentions=output.attentions, forward_passes=counter.forward_passes,
                             backward_passes=counter.backward_passes)
        for k, (composite, l) in enumerate(pairs):
            if l != label:
                continue
            rows = slice(first[k] * size, (first[k] + 1) * size)
            for method in jobs[composite]:
                _read_method(result, method, composite, rows, embedded, (word, position, token_type), grads,
                             reductions)
                if layers and method.readout != "gradient":
                    _layer_relevance(result, method.name, composite, rows, hidden, heads, grads[4:], mask)
        per_label.append(result)
    return per_label[0] if not all_labels else _stack_labels(per_label)


def _walk_per_copy(rules: RuleSet, logits, pairs, pair_labels, positions, wrt):
    """One walk of the graph per (composite, label) over the one forward (``rules.active`` names
    the copy the rule Functions apply): each copy's gradients w.r.t. ``wrt``, joined along dim 0
    in copy order as a stacked batch would give them, and each copy's target logit ``[batch]``."""
    walks, pair_logits = [], []
    for k, ((composite, _), labels) in enumerate(zip(pairs, pair_labels)):
        score = select(logits, labels, positions)
        pair_logits.append(score.detach())
        # the walk starts from 1 (gradient signal) or from the target logit (relevance signal)
        start = pair_logits[-1] if composite.signal == "relevance" else torch.ones_like(pair_logits[-1])
        rules.active[0] = k
        walk = torch.autograd.grad((score * start).sum(), wrt, allow_unused=True, retain_graph=k < len(pairs) - 1)
        walks.append([torch.zeros_like(t) if g is None else g for t, g in zip(wrt, walk)])
    return [torch.cat(parts, 0) for parts in zip(*walks)], pair_logits


def _read_method(result, method: Method, composite: Composite, rows: slice, embedded, parts, grads,
                 reductions) -> None:
    """One shared-pass method's relevance at the embedding output from its composite's slice
    (LRP: also the word/position/type shares and conservation)."""
    mask = result.attention_mask
    keep = mask.unsqueeze(-1).to(embedded.dtype)
    signal = grads[0][rows]
    if method.readout == "gradient":
        relevance = total = signal * keep
    elif method.readout == "gradient_x_input":
        relevance = total = embedded[rows].detach() * signal * keep
    else:
        relevance = relevance_at(embedded[rows], signal, composite) * keep
        if composite.signal == "relevance":
            total = relevance  # as the original BERT-LRP, relevance stops at the embedding output
        else:
            shares = {name: tensor[rows].detach() * grad[rows] * keep
                      for name, tensor, grad in zip(("word", "position", "token_type"), parts, grads[1:4])}
            result.embedding_shares[method.name] = shares
            total = shares["word"] + shares["position"] + shares["token_type"]
        result.conservation[method.name] = conservation_ratio(total.sum((1, 2)), result.target_logit)
        if composite.token_parts == "word":  # a token's score: its word share alone (conservation: all shares)
            total = result.embedding_shares[method.name]["word"]
    result.relevance[method.name] = relevance
    result.scores[method.name] = reduce_tokens(total, reductions.get(method.name, "sum")) * mask


def _stack_labels(per_label: List[Explanation]) -> Explanation:
    """One Explanation per label -> one with a label axis after the batch axis (``[batch, labels, ...]``)."""
    first = per_label[0]
    fields = method_scores.stack_labels(per_label)
    return Explanation(
        methods=[], logits=first.logits, target=torch.stack([e.target for e in per_label], 1),
        target_position=first.target_position, target_logit=torch.stack([e.target_logit for e in per_label], 1),
        attention_mask=first.attention_mask, attentions=first.attentions, forward_passes=first.forward_passes,
        backward_passes=first.backward_passes, all_labels=True,
        completeness_gap=fields["extras"].get("integrated_gradients.completeness_gap"), **fields)


def _layer_relevance(result, method: str, composite: Composite, rows: slice, hidden, heads, grads, mask) -> None:
    """Token relevance (summed over units) at every layer output and per head."""
    hidden_grads, head_grads = grads[: len(hidden)], grads[len(hidden):]
    result.layer_scores[method] = [relevance_at(h[rows], g[rows], composite).sum(-1) * mask
                                   for h, g in zip(hidden, hidden_grads)]
    result.head_scores[method] = [relevance_at(c[rows], g[rows], composite).sum(-1) * mask[:, None, :]
                                  for c, g in zip(heads, head_grads)]


def _forward_only(model, task, inputs, target, need_attention) -> "Explanation":
    with torch.no_grad():
        output = model(**inputs, output_attentions=need_attention)
    logits = logits_of(output)
    labels, positions = resolve_target(model, task, logits, target)
    return Explanation(methods=[], scores={}, relevance={}, logits=logits, target=labels,
                       target_position=positions, target_logit=select(logits, labels, positions),
                       attention_mask=inputs["attention_mask"], attentions=output.attentions)
