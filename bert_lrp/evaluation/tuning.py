"""The search for a model's most faithful LRP composite (``bert-lrp tune-lrp``).

A *point* of the search space fixes a few rules on top of AttnLRP (the default preset):

* ``softmax``: AttnLRP's Taylor rule or CP-LRP's detached attention;
* ``value_share``: the share of the attention-times-values product's relevance that goes to the
  values (None: the bilinear rule's, AttnLRP's 1/2; the attention weights get the rest, which a
  detached softmax discards: share 1 with the detached softmax is true CP-LRP);
* ``attention_layers``: the encoder layers [first, last) that softmax rule and value share apply to
  (None: every layer; the other layers keep AttnLRP's attention), as an
  :class:`~bert_lrp.rules.composites.AttentionOverride`;
* ``lower``: a linear rule object for the linear layers of kind ``lower_kind`` (``all``, ``ffn``,
  ``attention``) in the first ``lower_layers`` encoder layers (None: no such rule), as zennit's
  composites give the lower layers of a CNN other rules than the upper ones;
* ``linear``: the rule of the other linear layers (epsilon, or the norm-scaled epsilon);
* ``layer_norm``, ``bilinear``, ``activation`` and ``token_parts``.

Each candidate is scored on the tuning examples with ``evaluate``'s protocols
(:mod:`bert_lrp.evaluation.faithfulness`): ABPC in probability is the objective;
comprehensiveness, sufficiency and the conservation of relevance (its sum over the logit, with the
model's biases and with every bias set to 0) are recorded. The tuning examples are split in two
halves (alternate examples in file order): the search sees only the *search* half; the
*confirmation* half scores the winner and AttnLRP once at the end, and the winner is kept only if it
beats AttnLRP there by more than one paired standard error (else AttnLRP is the result).

The search: stages of grids (:data:`STAGES`: the attention rules and the layers they apply to, the
lower layers' gamma rule, the epsilon of the other layers), each from the best point so far, then
coordinate descent over every axis (:func:`default_budget`: the grids and one full pass). A move
is kept only when its paired gain in ABPC over the current best exceeds ``min_se`` paired standard
errors (default one), so that differences within the noise of the tuning texts do not move the
search. Everything is deterministic: the tuning texts are a seeded
sample, the candidate order is fixed, and ties keep the earlier candidate. Every scored candidate
is appended to a log, so an interrupted search resumes where it stopped.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Collection, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type

import torch

from ..rules.composites import ATTNLRP, AttentionOverride, Composite, LinearOverride
from ..rules.linear import (Epsilon, Gamma, LinearLayerRule, ScaledEpsilon, as_linear_rule, rule_from_dict,
                            searchable_rules)
from . import faithfulness as F
from .paired import paired

METRICS = ("abpc_p", "comprehensiveness_aopc", "sufficiency_aopc")
NAMED_AXES: Dict[str, Tuple[str, ...]] = {  # the other operations' choices, the first one AttnLRP's
    "softmax": ("taylor", "detach"), "layer_norm": ("detach_std", "jacobian"), "bilinear": ("uniform", "jacobian"),
    "activation": ("identity", "jacobian"), "token_parts": ("all", "word")}
VALUE_SHARES = (0.25, 0.5, 0.75, 1.0)
LOWER_KINDS = ("all", "ffn", "attention")
LOWER_GAMMAS = (0.01, 0.03, 0.1, 0.25)
LOWER_DEPTHS = (1, 2, 3, None)  # None: every encoder layer
EPSILONS: Tuple[LinearLayerRule, ...] = (Epsilon(0.003), Epsilon(0.01), Epsilon(0.03), ScaledEpsilon(0.01),
                                         ScaledEpsilon(0.1))
SEARCH, CONFIRM = "search", "confirm"  # the two halves of the tuning examples


@dataclass(frozen=True)
class Point:
    """One candidate of the search space (see the module docstring). ``lower`` and ``linear`` take
    rule objects or rule names (then with their default parameters)."""

    softmax: str = "taylor"
    lower: Optional[LinearLayerRule] = None
    lower_layers: int = 0
    linear: LinearLayerRule = Epsilon(0.0)
    layer_norm: str = "detach_std"
    bilinear: str = "uniform"
    activation: str = "identity"
    token_parts: str = "all"
    value_share: Optional[float] = None
    lower_kind: str = "all"
    attention_layers: Optional[Tuple[int, int]] = None  # where softmax and value_share apply; None: every layer

    def __post_init__(self) -> None:
        if self.lower is not None:
            object.__setattr__(self, "lower", as_linear_rule(self.lower))
        object.__setattr__(self, "linear", as_linear_rule(self.linear))
        if self.lower_kind not in LOWER_KINDS:
            raise ValueError(f"lower_kind must be one of {', '.join(LOWER_KINDS)}, got {self.lower_kind!r}")
        if self.value_share is not None:
            object.__setattr__(self, "value_share", float(self.value_share))
        if self.attention_layers is not None:
            layers = tuple(self.attention_layers)
            if len(layers) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in layers) \
                    or not 0 <= layers[0] < layers[1]:
                raise ValueError(f"attention_layers must be [first, last) with 0 <= first < last, got "
                                 f"{self.attention_layers!r}")
            object.__setattr__(self, "attention_layers", layers)

    def normalised(self, layers: Optional[int] = None) -> "Point":
        """The same composite written one way only: no lower rule unless it covers a layer; the
        value share None when it is the bilinear rule's own (1/2 uniform, 1 Jacobian); no
        attention layers when the attention rules are AttnLRP's (Taylor, the bilinear rule's share)
        or the range covers all ``layers`` (the encoder's depth, when given)."""
        point = self
        if point.value_share is not None and point.value_share == (0.5 if point.bilinear == "uniform" else 1.0):
            point = replace(point, value_share=None)
        if point.attention_layers is not None and (
                (point.softmax == "taylor" and point.value_share is None) or point.attention_layers == (0, layers)):
            point = replace(point, attention_layers=None)
        if point.lower is None or point.lower_layers == 0:
            return replace(point, lower=None, lower_layers=0, lower_kind="all")
        return point

    def composite(self, name: str = "tuned") -> Composite:
        """AttnLRP with this point's rules; with ``attention_layers``, its softmax rule and value
        share in those layers only (an attention override) and AttnLRP's attention elsewhere."""
        overrides: Tuple[LinearOverride, ...] = ()
        if self.lower is not None and self.lower_layers > 0:
            kinds = () if self.lower_kind == "all" else (self.lower_kind,)
            overrides = (LinearOverride(self.lower, kinds=kinds, layers=(0, self.lower_layers)),)
        softmax, value_share, attention = self.softmax, self.value_share, ()
        if self.attention_layers is not None:
            attention = (AttentionOverride(self.attention_layers, softmax=self.softmax, value_share=self.value_share),)
            softmax, value_share = ATTNLRP.softmax, ATTNLRP.value_share
        return replace(ATTNLRP, name=name, softmax=softmax, layer_norm=self.layer_norm, bilinear=self.bilinear,
                       activation=self.activation, linear=self.linear, token_parts=self.token_parts,
                       linear_overrides=overrides, value_share=value_share, attention_overrides=attention)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready, the rules as ``{"name": ..., parameter: value}`` (read back by :meth:`from_dict`)."""
        values = asdict(self)
        values["lower"] = None if self.lower is None else self.lower.to_dict()
        values["linear"] = self.linear.to_dict()
        values["attention_layers"] = None if self.attention_layers is None else list(self.attention_layers)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Point":
        """:meth:`to_dict`'s form, or the earlier search versions' (``lower`` a rule name or
        ``"none"``, flat ``gamma``, ``beta`` and ``epsilon``; no value share, no lower kind, no
        attention layers: every layer)."""
        values = dict(values)
        if "epsilon" in values:  # the first version
            gamma, beta, epsilon = values.pop("gamma", 0.1), values.pop("beta", 1.0), values.pop("epsilon")
            lower = values.get("lower", "none")
            values["lower"] = None if lower == "none" else {"name": lower, **(
                {"gamma": gamma} if lower == "gamma" else {"beta": beta} if lower == "contribution_alpha_beta" else {})}
            values["linear"] = {"name": "epsilon", "epsilon": epsilon}
        lower = values.get("lower")
        values["lower"] = None if lower is None else rule_from_dict(lower)
        values["linear"] = rule_from_dict(values.get("linear", Epsilon(0.0).to_dict()))
        return cls(**values)

    def key(self) -> str:
        """One text per composite (the normalised point, exact parameters)."""
        return json.dumps(self.normalised().to_dict(), sort_keys=True)

    def describe(self) -> str:
        """Short text: only what differs from AttnLRP."""
        point, base = self.normalised(), Point()
        changed = []
        for name in point.__dataclass_fields__:
            value = getattr(point, name)
            if value != getattr(base, name):
                text = value.describe() if isinstance(value, LinearLayerRule) else \
                    f"[{value[0]}, {value[1]})" if name == "attention_layers" else value
                changed.append(f"{name}={text}")
        return ", ".join(changed) or "attnlrp"


@dataclass
class Scored:
    """A candidate's scores on one half of the tuning examples (``part``): means, the per-example
    ABPC and (when measured) the conservation of relevance."""

    point: Point
    means: Dict[str, float]
    abpc: List[float]
    stage: str
    seconds: float
    part: str = SEARCH

    def record(self, step: int) -> dict:
        """The log row (with ``digest``: a row edited afterwards no longer matches it)."""
        row = {"step": step, "stage": self.stage, "part": self.part, "point": self.point.to_dict(),
               "describe": self.point.describe(), "means": self.means, "abpc": [round(v, 6) for v in self.abpc],
               "seconds": round(self.seconds, 2)}
        return {**row, "digest": row_digest(row)}

    @classmethod
    def from_record(cls, record: dict) -> "Scored":
        return cls(Point.from_dict(record["point"]), dict(record["means"]), list(record["abpc"]), record["stage"],
                   float(record["seconds"]), record.get("part", SEARCH))


def row_digest(row: Mapping[str, Any]) -> str:
    """SHA-256 (16 hex digits) of a log row without its ``index`` and ``digest``."""
    content = {k: v for k, v in row.items() if k not in ("index", "digest")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()[:16]


class SearchLogError(ValueError):
    """A row of the search log that is not what the search wrote (the message names the line)."""


def check_row(record: Mapping[str, Any], line: int, path: str, examples: Mapping[str, int]) -> "Scored":
    """The log row ``record`` (line ``line`` of ``path``) as a :class:`Scored`, after checking it:
    its digest, its per-example ABPC (one per example of its half) and their mean; an edited row
    raises :class:`SearchLogError` naming the line and the field."""
    where = f"{path} line {line}"
    digest = record.get("digest")
    if digest is not None and digest != row_digest(record):
        raise SearchLogError(f"{where}: field 'digest' does not match the row (edited after the search wrote it)")
    try:
        scored = Scored.from_record(dict(record))
    except (KeyError, TypeError, ValueError) as error:
        raise SearchLogError(f"{where}: not a search log row ({error})") from None
    expected = examples.get(scored.part)
    if expected is None or len(scored.abpc) != expected:
        raise SearchLogError(f"{where}: field 'abpc' holds {len(scored.abpc)} scores, the {scored.part} half has "
                             f"{expected}")
    mean = sum(scored.abpc) / len(scored.abpc)
    if not isinstance(scored.means.get("abpc_p"), (int, float)) or abs(mean - scored.means["abpc_p"]) > 1e-5:
        raise SearchLogError(f"{where}: field 'means.abpc_p' ({scored.means.get('abpc_p')}) is not the mean of "
                             f"its per-example abpc ({mean:.6f})")
    return scored


def sample_texts(data: Sequence[Tuple[str, Optional[int]]], count: int, min_words: int, seed: int,
                 exclude: Collection[int] = ()) -> List[int]:
    """Indices of ``count`` rows of ``data`` (``(text or words, label)``) with at least
    ``min_words`` words, drawn with ``seed`` (distinct texts only, none of ``exclude``), in file
    order."""
    seen, eligible = set(), []
    for i, (text, _) in enumerate(data):
        key = F.data_text(text).strip()
        if len(key.split()) >= min_words and key not in seen and i not in exclude:
            seen.add(key)
            eligible.append(i)
    chosen = random.Random(seed).sample(eligible, min(count, len(eligible)))
    return sorted(chosen)


def text_ids(tokenizer) -> Callable[[str], Sequence[int]]:
    """``text -> ids``: the ids the road gives ``text`` (the whole text, special tokens included),
    to find a text again after normalising what the tokenizer ignores (case for an uncased one,
    the space before punctuation)."""
    from ..attribution.road import as_inputs, encode_whole

    def ids(text: str) -> Sequence[int]:
        return [int(i) for i in encode_whole(tokenizer, as_inputs(text)[0])["input_ids"][0]] if text.strip() else []
    return ids


def halves(indices: Sequence[int]) -> Dict[str, List[int]]:
    """The search half (the 1st, 3rd, ... index) and the confirmation half (the 2nd, 4th, ...)."""
    ordered = sorted(indices)
    return {SEARCH: ordered[0::2], CONFIRM: ordered[1::2]}


class TuningSet:
    """The tuning examples, encoded once by the road, with one cache of perturbed rows' logits
    shared by all candidates (two candidates that rank an example's tokens alike cost nothing)."""

    def __init__(self, model, tokenizer, prepared, data: Sequence[Tuple[str, Optional[int]]], indices: Sequence[int],
                 batch_size: int = 16, rows_per_forward: int = 128, conservation_examples: int = 16) -> None:
        from ..attribution.road import length_batches

        self.model, self.prepared = model, prepared
        self.examples, self.rows = F.build_examples(model, tokenizer, prepared, data, indices, "bert-lrp tune-lrp",
                                                    rows_per_forward)
        self.cache = F.RowCache(F.model_forward(model), rows_per_forward)
        for example in self.examples:
            self.cache.request((example.input_ids, example.token_type_ids))
        self.cache.run()
        self.predicted = {x.index: int(F.at_target(x, self.cache((x.input_ids, x.token_type_ids))).argmax())
                          for x in self.examples}
        self.parts = halves([x.index for x in self.examples])
        lengths = {x.index: len(x.input_ids) for x in self.examples}
        by_index = {x.index: x for x in self.examples}
        self.groups = {part: [[by_index[i] for i in group]
                              for group in length_batches(members, lengths, batch_size, None)]
                       for part, members in self.parts.items()}
        self.pad_id, self.mask_id = int(model.config.pad_token_id), int(tokenizer.mask_token_id)
        self.conservation = Conservation(model, [by_index[i] for i in self.parts[SEARCH][:conservation_examples]],
                                         self.predicted) if prepared.task == "sequence" else None

    def __len__(self) -> int:
        return len(self.examples)

    def sizes(self) -> Dict[str, int]:
        return {part: len(members) for part, members in self.parts.items()}

    def score(self, composite: Composite, part: str = SEARCH) -> Tuple[Dict[str, float], List[float]]:
        """Mean ABPC, comprehensiveness and sufficiency of ``composite`` over the examples of
        ``part`` (and its conservation, on the search half), and the per-example ABPC in the
        examples' index order."""
        scores: Dict[int, torch.Tensor] = {}
        for group in self.groups[part]:
            predicted = [self.predicted[x.index] for x in group]
            values = F.method_scores(self.model, self.prepared, self.rows, group, predicted, "lrp", {"rule": composite})
            scores.update({x.index: v for x, v in zip(group, values)})
        members = [x for x in self.examples if x.index in scores]
        for lookup in (self.cache.request, None):  # plan the rows, forward the new ones, then read
            if lookup is None:
                self.cache.run()
                lookup = self.cache
            records = {x.index: F.example_metrics(x, scores[x.index], self.predicted[x.index], lookup, self.pad_id,
                                                  self.mask_id) for x in members}
        order = sorted(records)
        means = {m: sum(records[i][m] for i in order) / len(order) for m in METRICS}
        if self.conservation is not None and part == SEARCH:
            means.update(self.conservation(composite))
        return means, [records[i]["abpc_p"] for i in order]


class Conservation:
    """The sum of a composite's input relevance (every embedding share) over the explained logit,
    mean over a few examples: with the model's biases, and with every bias set to 0 (a copy of
    the model), where a conservative composite gives exactly 1."""

    def __init__(self, model, examples: Sequence[Any], predicted: Mapping[int, int]) -> None:
        self.model = model
        self.biasless = copy.deepcopy(model)
        with torch.no_grad():
            for name, parameter in self.biasless.named_parameters():
                if name.endswith("bias"):
                    parameter.zero_()
        self.examples = list(examples)
        self.predicted = [predicted[x.index] for x in self.examples]

    def __call__(self, composite: Composite) -> Dict[str, float]:
        from ..attribution.explain import explain

        whole = replace(composite, token_parts="all")
        values = {}
        for name, model in (("conservation", self.model), ("conservation_no_bias", self.biasless)):
            ratios = []
            for example, label in zip(self.examples, self.predicted):
                ids = torch.tensor([example.input_ids])
                batch = {"input_ids": ids, "token_type_ids": torch.tensor([example.token_type_ids]),
                         "attention_mask": torch.ones_like(ids)}
                result = explain(model, batch, ["lrp"], target=label, rule=whole)
                with torch.no_grad():
                    logit = float(model(**batch).logits[0, label])
                ratios.append(float(result.scores["lrp"].sum()) / logit if logit else float("nan"))
            values[name] = sum(ratios) / len(ratios)
        return values


def _values_around(values: Sequence[float], current: float) -> List[float]:
    """The values next to ``current`` in ``values`` (both neighbours; the nearest when not in it)."""
    if current not in values:
        return [values[_nearest(values, current)]]
    i = list(values).index(current)
    return [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values)]


def _nearest(values: Sequence[float], value: float) -> int:
    """Index of the value of ``values`` nearest ``value`` on a log scale."""
    return min(range(len(values)), key=lambda i: abs(math.log10(values[i] + 1e-3) - math.log10(value + 1e-3)))


def search_start(cls: Type[LinearLayerRule]) -> LinearLayerRule:
    """The rule ``cls`` as the search first proposes it: each parameter of its ``search_grid`` at
    the grid value nearest its default, the others at their defaults."""
    default = cls()
    grid = cls.search_grid or {}
    return replace(default, **{name: values[_nearest(values, getattr(default, name))]
                               for name, values in grid.items()})


def attention_halves(layers: int) -> List[Optional[Tuple[int, int]]]:
    """The attention layers the grid tries: all (None), the lower half [0, L//2) and the upper half
    [L//2, L) (for one layer: all alone)."""
    return _distinct_ranges([None, (0, layers // 2), (layers // 2, layers)], layers)


def _distinct_ranges(ranges: Sequence[Optional[Tuple[int, int]]], layers: int) -> List[Optional[Tuple[int, int]]]:
    """``ranges`` that hold a layer of the ``layers``, the one covering all as None, each once, in order."""
    kept: List[Optional[Tuple[int, int]]] = []
    for r in ranges:
        if r is not None and not 0 <= r[0] < r[1] <= layers:
            continue
        r = None if r == (0, layers) else r
        if r not in kept:
            kept.append(r)
    return kept


def _distinct_points(points: Sequence[Point], layers: int) -> List[Point]:
    """``points`` normalised, each composite once, in order."""
    seen, kept = set(), []
    for point in points:
        point = point.normalised(layers)
        if point.key() not in seen:
            seen.add(point.key())
            kept.append(point)
    return kept


def attention_grid(point: Point, layers: int) -> List[Point]:
    """Stage one: the softmax rule x the value share x the layers they apply to (all, the lower
    half, the upper half; AttnLRP's attention elsewhere). Taylor with 1/2 is AttnLRP (in any
    layers: one point); detached with 1/2 the first shipped composite; detached with 1 CP-LRP's
    attention. 22 distinct points (8 for one layer)."""
    return _distinct_points([replace(point, softmax=s, value_share=v, attention_layers=r) for s in NAMED_AXES["softmax"]
                             for v in VALUE_SHARES for r in attention_halves(layers)], layers)


def lower_grid(point: Point, layers: int) -> List[Point]:
    """Stage two: gamma {0.01, 0.03, 0.1, 0.25} x depth {1, 2, 3, all} x kind {all, ffn, attention}."""
    depths = sorted({layers if d is None else min(d, layers) for d in LOWER_DEPTHS})
    return [replace(point, lower=Gamma(gamma=g), lower_layers=d, lower_kind=k)
            for g in LOWER_GAMMAS for d in depths for k in LOWER_KINDS]


def epsilon_grid(point: Point, layers: int) -> List[Point]:
    """Stage three: the other layers' epsilon {0.003, 0.01, 0.03} and the norm-scaled epsilon."""
    return [replace(point, linear=rule) for rule in EPSILONS]


STAGES: Tuple[Tuple[str, Callable[[Point, int], List[Point]]], ...] = (
    ("attention", attention_grid), ("lower", lower_grid), ("epsilon", epsilon_grid))


def neighbours(point: Point, axis: str, layers: int) -> List[Point]:
    """Coordinate descent: the candidates that change ``axis`` of ``point``."""
    if axis == "value_share":
        current = point.value_share if point.value_share is not None else (0.5 if point.bilinear == "uniform" else 1.0)
        return [replace(point, value_share=v) for v in _values_around(VALUE_SHARES, current)]
    if axis == "attention_layers":  # all, a half, or the current range one layer wider or narrower at an end
        current = point.normalised(layers)
        first, last = current.attention_layers or (0, layers)
        ranges = attention_halves(layers) + [(first - 1, last), (first + 1, last), (first, last - 1), (first, last + 1)]
        candidates = [replace(point, attention_layers=r) for r in _distinct_ranges(ranges, layers)]
        return [p for p in _distinct_points(candidates, layers) if p.key() != current.key()]
    if axis == "lower":  # no lower rule, or another registered rule (not the other layers' own)
        k = point.lower_layers or max(1, layers // 2)
        candidates = [None] + [search_start(cls) for cls in searchable_rules("gradient")
                               if cls is not type(point.linear)]
        return [replace(point, lower=rule, lower_layers=0 if rule is None else k) for rule in candidates
                if (rule is None) != (point.lower is None) or (rule is not None and type(rule) is not type(point.lower))]
    if axis == "lower_layers":
        if point.lower is None:
            return []
        return [replace(point, lower_layers=k) for k in range(1, layers + 1) if k != point.lower_layers]
    if axis == "lower_kind":
        if point.lower is None:
            return []
        return [replace(point, lower_kind=k) for k in LOWER_KINDS if k != point.lower_kind]
    if axis == "lower_parameters":  # each parameter of the lower rule: its neighbours on the rule's grid
        if point.lower is None:
            return []
        return [replace(point, lower=replace(point.lower, **{name: value}))
                for name, values in (type(point.lower).search_grid or {}).items()
                for value in _values_around(values, getattr(point.lower, name))]
    if axis == "linear":  # the epsilon values and the norm-scaled epsilon, and epsilon 0
        return [replace(point, linear=rule) for rule in (Epsilon(0.0),) + EPSILONS if rule != point.linear]
    return [replace(point, **{axis: value}) for value in NAMED_AXES[axis] if value != getattr(point, axis)]


AXES = ("value_share", "softmax", "attention_layers", "lower", "lower_layers", "lower_kind", "lower_parameters",
        "linear", "layer_norm", "bilinear", "activation", "token_parts")


def pass_size(layers: int) -> int:
    """At most how many candidates one pass of coordinate descent over :data:`AXES` proposes, for an
    encoder of ``layers`` layers: each axis's largest neighbourhood (:func:`neighbours`)."""
    rules = searchable_rules("gradient")
    parameters = max((len(cls.search_grid or {}) for cls in rules), default=0)
    largest = {"value_share": 2, "attention_layers": 7,  # 3 ranges + 4 one layer away
               "lower": 1 + len(rules), "lower_layers": layers - 1, "lower_kind": len(LOWER_KINDS) - 1,
               "lower_parameters": 2 * parameters, "linear": len(EPSILONS) + 1}
    return sum(largest[axis] if axis in largest else len(NAMED_AXES[axis]) - 1 for axis in AXES)


def default_budget(layers: int) -> int:
    """The candidates a search of an encoder of ``layers`` layers may score by default: AttnLRP,
    the three grids (:data:`STAGES`) and one full pass of coordinate descent (:func:`pass_size`),
    so that the default never stops the search before it has tried every axis once (116 for 12
    layers)."""
    return 1 + sum(len(build(Point(), layers)) for _, build in STAGES) + pass_size(layers)


@dataclass
class SearchResult:
    best: Scored                      # the search's winner, on the search half
    start: Scored                     # AttnLRP, on the search half
    log: List[Scored]
    stopped: str                      # why the search ended: "converged" or "budget"
    confirmation: Dict[str, Any] = field(default_factory=dict)  # the winner vs AttnLRP on the other half
    chosen: Optional[Point] = None    # what is written: the winner if confirmed, else AttnLRP


def gain(candidate: Scored, best: Scored) -> Tuple[float, float]:
    """The paired ABPC gain of ``candidate`` over ``best`` and its standard error."""
    return paired(candidate.abpc, best.abpc)


def search(evaluate: Callable[[Point, str], Tuple[Dict[str, float], List[float]]], layers: int, budget: int,
           min_se: float = 1.0, done: Optional[Dict[Tuple[str, str], Scored]] = None,
           on_scored: Optional[Callable[[Scored], None]] = None, confirm: bool = True) -> SearchResult:
    """Grids, then coordinate descent, then the confirmation (see the module docstring).
    ``evaluate(point, part)`` scores a candidate on the half ``part`` (:data:`SEARCH` or
    :data:`CONFIRM`); ``done`` holds candidates scored by an earlier, interrupted run of the same
    search (by ``(part, Point.key)``); ``on_scored`` sees every newly scored candidate (to log it).
    A move is kept when its paired gain over the current best exceeds ``min_se`` standard errors
    (and is positive)."""
    done = dict(done or {})
    log: List[Scored] = []
    stopped = "converged"
    scored_count = [0]

    def score(point: Point, stage: str, part: str = SEARCH, counted: bool = True) -> Optional[Scored]:
        nonlocal stopped
        point = point.normalised(layers)
        key = (part, point.key())
        if key in done:
            scored = done[key]
        elif counted and scored_count[0] >= budget:
            stopped = "budget"
            return None
        else:
            started = time.perf_counter()
            means, abpc = evaluate(point, part)
            scored = Scored(point, means, abpc, stage, time.perf_counter() - started, part)
            done[key] = scored
            if on_scored is not None:
                on_scored(scored)
        if all((s.part, s.point.key()) != key for s in log):
            log.append(scored)
            scored_count[0] += part == SEARCH
        return scored

    def better(candidates: Sequence[Point], best: Scored, stage: str) -> Scored:
        """The candidate of the largest gain over ``best`` that exceeds ``min_se`` standard errors."""
        winner, winner_gain = best, 0.0
        for point in candidates:
            scored = score(point, stage)
            if scored is None:
                break
            difference, error = gain(scored, best)
            if difference > 0 and difference > min_se * error and difference > winner_gain:
                winner, winner_gain = scored, difference
        return winner

    start = score(Point(), "start")
    best = start
    for name, build in STAGES:
        best = better(build(best.point, layers), best, f"grid:{name}")
        if stopped == "budget":
            break
    changed = stopped != "budget"
    while changed:
        changed = False
        for axis in AXES:
            round_best = better(neighbours(best.point, axis, layers), best, f"refine:{axis}")
            if round_best is not best:
                best, changed = round_best, True
            if stopped == "budget":
                changed = False
                break
    result = SearchResult(best, start, log, stopped, chosen=best.point)
    if confirm and best is not start:
        base, winner = score(Point(), "confirm", CONFIRM, False), score(best.point, "confirm", CONFIRM, False)
        difference, error = gain(winner, base)
        confirmed = difference > 0 and difference > min_se * error
        result.confirmation = {"examples": len(winner.abpc), "abpc_gain_over_attnlrp": difference,
                               "abpc_gain_standard_error": error, "confirmed": confirmed,
                               "winner_means": winner.means, "attnlrp_means": base.means}
        result.chosen = best.point if confirmed else Point()
    elif confirm:
        result.confirmation = {"confirmed": False, "note": "the search kept AttnLRP: nothing to confirm"}
    return result


def iter_records(log: Sequence[Scored]) -> Iterator[dict]:
    for step, scored in enumerate(log):
        yield scored.record(step)
