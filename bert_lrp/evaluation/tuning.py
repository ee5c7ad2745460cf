"""The search for a model's most faithful LRP composite (``bert-lrp tune-lrp``).

A *point* of the search space fixes a few rules on top of AttnLRP (the default preset):

* ``softmax``: AttnLRP's Taylor rule or CP-LRP's detached attention;
* ``lower``: a linear rule object for every linear layer of the first ``lower_layers`` encoder
  layers (None: no such rule), as zennit's composites give the lower layers of a CNN other rules
  than the upper ones. The candidates are the registered rules that declare a ``search_grid``
  (:mod:`bert_lrp.rules.linear`; built in: gamma, z+, contribution alpha-beta), their parameters
  moved along that grid;
* ``linear``: the rule of the other linear layers (epsilon, its ``epsilon`` on its grid);
* ``layer_norm`` (identity on 1/sigma, or the full Jacobian), ``bilinear`` (half to each factor,
  or the whole), ``activation`` (identity, or the Jacobian) and ``token_parts`` (a token's score:
  its word, position and type shares, or its word share alone).

Each candidate is scored on the tuning examples with ``evaluate``'s protocols
(:mod:`bert_lrp.evaluation.faithfulness`): ABPC in probability is the objective;
comprehensiveness and sufficiency (ERASER AOPC) are recorded. The search is a small grid over the
two axes the literature varies most (softmax rule x lower-layer rule), then coordinate descent:
each axis in a fixed order, its values tried around the best point, a change kept when it raises
the mean ABPC by more than ``min_gain``; it stops when a pass changes nothing or after ``budget``
candidates. Everything is deterministic: the tuning texts are a seeded sample, the candidate order
is fixed, and ties keep the earlier candidate. Every scored candidate is appended to a log, so an
interrupted search resumes where it stopped.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Collection, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type

import torch

from ..rules.composites import ATTNLRP, Composite, LinearOverride
from ..rules.linear import Epsilon, Gamma, LinearLayerRule, ZPlus, as_linear_rule, rule_from_dict, searchable_rules
from . import faithfulness as F

METRICS = ("abpc_p", "comprehensiveness_aopc", "sufficiency_aopc")
NAMED_AXES: Dict[str, Tuple[str, ...]] = {  # the other operations' choices, the first one AttnLRP's
    "softmax": ("taylor", "detach"), "layer_norm": ("detach_std", "jacobian"), "bilinear": ("uniform", "jacobian"),
    "activation": ("identity", "jacobian"), "token_parts": ("all", "word")}


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

    def __post_init__(self) -> None:
        if self.lower is not None:
            object.__setattr__(self, "lower", as_linear_rule(self.lower))
        object.__setattr__(self, "linear", as_linear_rule(self.linear))

    def normalised(self) -> "Point":
        """The same composite written one way only: no lower rule unless it covers a layer."""
        if self.lower is None or self.lower_layers == 0:
            return replace(self, lower=None, lower_layers=0)
        return self

    def composite(self, name: str = "tuned") -> Composite:
        overrides: Tuple[LinearOverride, ...] = ()
        if self.lower is not None and self.lower_layers > 0:
            overrides = (LinearOverride(self.lower, layers=(0, self.lower_layers)),)
        return replace(ATTNLRP, name=name, softmax=self.softmax, layer_norm=self.layer_norm, bilinear=self.bilinear,
                       activation=self.activation, linear=self.linear, token_parts=self.token_parts,
                       linear_overrides=overrides)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready, the rules as ``{"name": ..., parameter: value}`` (read back by :meth:`from_dict`)."""
        values = asdict(self)
        values["lower"] = None if self.lower is None else self.lower.to_dict()
        values["linear"] = self.linear.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Point":
        """:meth:`to_dict`'s form, or the first search version's (``lower`` a rule name or
        ``"none"``, flat ``gamma``, ``beta`` and ``epsilon``): a log of an earlier search resumes."""
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
                changed.append(f"{name}={value.describe() if isinstance(value, LinearLayerRule) else value}")
        return ", ".join(changed) or "attnlrp"


@dataclass
class Scored:
    """A candidate's scores: means over the tuning examples and the per-example ABPC."""

    point: Point
    means: Dict[str, float]
    abpc: List[float]
    stage: str
    seconds: float

    def record(self, step: int) -> dict:
        return {"step": step, "stage": self.stage, "point": self.point.to_dict(), "describe": self.point.describe(),
                "means": self.means, "abpc": [round(v, 6) for v in self.abpc], "seconds": round(self.seconds, 2)}

    @classmethod
    def from_record(cls, record: dict) -> "Scored":
        return cls(Point.from_dict(record["point"]), dict(record["means"]), list(record["abpc"]), record["stage"],
                   float(record["seconds"]))


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


class TuningSet:
    """The tuning examples, encoded once by the road, with one cache of perturbed rows' logits
    shared by all candidates (two candidates that rank an example's tokens alike cost nothing)."""

    def __init__(self, model, tokenizer, prepared, data: Sequence[Tuple[str, Optional[int]]], indices: Sequence[int],
                 batch_size: int = 16, rows_per_forward: int = 128) -> None:
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
        lengths = {x.index: len(x.input_ids) for x in self.examples}
        by_index = {x.index: x for x in self.examples}
        self.groups = [[by_index[i] for i in group]
                       for group in length_batches([x.index for x in self.examples], lengths, batch_size, None)]
        self.pad_id, self.mask_id = int(model.config.pad_token_id), int(tokenizer.mask_token_id)

    def __len__(self) -> int:
        return len(self.examples)

    def score(self, composite: Composite) -> Tuple[Dict[str, float], List[float]]:
        """Mean ABPC, comprehensiveness and sufficiency of ``composite`` over the examples, and
        the per-example ABPC in the examples' index order."""
        scores: Dict[int, torch.Tensor] = {}
        for group in self.groups:
            predicted = [self.predicted[x.index] for x in group]
            values = F.method_scores(self.model, self.prepared, self.rows, group, predicted, "lrp", {"rule": composite})
            scores.update({x.index: v for x, v in zip(group, values)})
        for lookup in (self.cache.request, None):  # plan the rows, forward the new ones, then read
            if lookup is None:
                self.cache.run()
                lookup = self.cache
            records = {x.index: F.example_metrics(x, scores[x.index], self.predicted[x.index], lookup, self.pad_id,
                                                  self.mask_id) for x in self.examples}
        order = sorted(records)
        means = {m: sum(records[i][m] for i in order) / len(order) for m in METRICS}
        return means, [records[i]["abpc_p"] for i in order]


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


def grid(layers: int) -> List[Point]:
    """Stage one: softmax rule x lower-layer rule (in the lower half of the encoder): none, gamma
    0.1, gamma 1, z+."""
    half = max(1, layers // 2)
    lowers = [Point(), Point(lower=Gamma(0.1), lower_layers=half), Point(lower=Gamma(1.0), lower_layers=half),
              Point(lower=ZPlus(), lower_layers=half)]
    return [replace(p, softmax=s) for s in NAMED_AXES["softmax"] for p in lowers]


def neighbours(point: Point, axis: str, layers: int) -> List[Point]:
    """Stage two: the candidates that change ``axis`` of ``point``."""
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
    if axis == "lower_parameters":  # each parameter of the lower rule: its neighbours on the rule's grid
        if point.lower is None:
            return []
        return [replace(point, lower=replace(point.lower, **{name: value}))
                for name, values in (type(point.lower).search_grid or {}).items()
                for value in _values_around(values, getattr(point.lower, name))]
    if axis == "linear":  # each parameter of the other layers' rule: every other value of its grid
        return [replace(point, linear=replace(point.linear, **{name: value}))
                for name, values in (type(point.linear).search_grid or {}).items()
                for value in values if value != getattr(point.linear, name)]
    return [replace(point, **{axis: value}) for value in NAMED_AXES[axis] if value != getattr(point, axis)]


AXES = ("lower", "lower_layers", "lower_parameters", "linear", "softmax", "layer_norm", "bilinear", "activation",
        "token_parts")


@dataclass
class SearchResult:
    best: Scored
    start: Scored
    log: List[Scored]
    stopped: str  # why the search ended: "converged" or "budget"


def search(evaluate: Callable[[Point], Tuple[Dict[str, float], List[float]]], layers: int, budget: int,
           min_gain: float = 0.001, done: Optional[Dict[str, Scored]] = None,
           on_scored: Optional[Callable[[Scored], None]] = None) -> SearchResult:
    """Grid, then coordinate descent (see the module docstring). ``evaluate(point)`` scores a
    candidate; ``done`` holds candidates scored by an earlier, interrupted run of the same search
    (by :meth:`Point.key`); ``on_scored`` sees every newly scored candidate (to log it)."""
    done = dict(done or {})
    log: List[Scored] = []
    stopped = "converged"

    def score(point: Point, stage: str) -> Optional[Scored]:
        nonlocal stopped
        point = point.normalised()
        key = point.key()
        if key in done:
            scored = done[key]
        elif len(log) >= budget:
            stopped = "budget"
            return None
        else:
            started = time.perf_counter()
            means, abpc = evaluate(point)
            scored = Scored(point, means, abpc, stage, time.perf_counter() - started)
            done[key] = scored
            if on_scored is not None:
                on_scored(scored)
        if all(s.point.key() != key for s in log):
            log.append(scored)
        return scored

    start = score(Point(), "grid")
    best = start
    for point in grid(layers):
        scored = score(point, "grid")
        if scored is not None and scored.means["abpc_p"] > best.means["abpc_p"]:
            best = scored
    changed = True
    while changed and stopped != "budget":
        changed = False
        for axis in AXES:
            round_best = best
            for point in neighbours(best.point, axis, layers):
                scored = score(point, f"refine:{axis}")
                if scored is not None and scored.means["abpc_p"] > round_best.means["abpc_p"] + min_gain:
                    round_best = scored
            if round_best is not best:
                best, changed = round_best, True
            if stopped == "budget":
                break
    return SearchResult(best, start, log, stopped)


def iter_records(log: Sequence[Scored]) -> Iterator[dict]:
    for step, scored in enumerate(log):
        yield scored.record(step)
