"""The search for a model's most faithful LRP composite (``bert-lrp tune-lrp``).

A *point* of the search space fixes a few rules on top of AttnLRP (the default preset):

* ``softmax``: AttnLRP's Taylor rule or CP-LRP's detached attention;
* ``lower``: a rule for every linear layer of the first ``k`` encoder layers (none, gamma with
  ``gamma``, z+, or contribution alpha-beta with ``beta``), as zennit's composites give the lower
  layers of a CNN other rules than the upper ones;
* ``epsilon``: the epsilon of the epsilon rule on the other linear layers;
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

import math
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Collection, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ..rules.composites import ATTNLRP, Composite, LinearOverride
from . import faithfulness as F

LOWER_RULES = ("none", "gamma", "zplus", "contribution_alpha_beta")
GAMMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
BETAS = (0.25, 0.5, 1.0, 2.0)
EPSILONS = (0.0, 0.01, 0.1, 1.0)
METRICS = ("abpc_p", "comprehensiveness_aopc", "sufficiency_aopc")


@dataclass(frozen=True)
class Point:
    """One candidate of the search space (see the module docstring)."""

    softmax: str = "taylor"
    lower: str = "none"
    lower_layers: int = 0
    gamma: float = 0.1
    beta: float = 1.0
    epsilon: float = 0.0
    layer_norm: str = "detach_std"
    bilinear: str = "uniform"
    activation: str = "identity"
    token_parts: str = "all"

    def normalised(self) -> "Point":
        """The same composite with the unused parameters at their defaults (one key per composite)."""
        point = self
        if point.lower == "none" or point.lower_layers == 0:
            point = replace(point, lower="none", lower_layers=0)
        if point.lower != "gamma":
            point = replace(point, gamma=Point.gamma)
        if point.lower != "contribution_alpha_beta":
            point = replace(point, beta=Point.beta)
        return point

    def composite(self, name: str = "tuned") -> Composite:
        overrides: Tuple[LinearOverride, ...] = ()
        if self.lower != "none" and self.lower_layers > 0:
            overrides = (LinearOverride(self.lower, layers=(0, self.lower_layers), gamma=self.gamma, beta=self.beta),)
        return replace(ATTNLRP, name=name, softmax=self.softmax, layer_norm=self.layer_norm, bilinear=self.bilinear,
                       activation=self.activation, epsilon=self.epsilon, token_parts=self.token_parts,
                       linear_overrides=overrides)

    def key(self) -> str:
        point = asdict(self.normalised())
        return ",".join(f"{k}={v}" for k, v in point.items())

    def describe(self) -> str:
        """Short text: only what differs from AttnLRP."""
        point, base = asdict(self.normalised()), asdict(Point())
        changed = [f"{k}={v}" for k, v in point.items() if v != base[k]]
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
        return {"step": step, "stage": self.stage, "point": asdict(self.point), "describe": self.point.describe(),
                "means": self.means, "abpc": [round(v, 6) for v in self.abpc], "seconds": round(self.seconds, 2)}

    @classmethod
    def from_record(cls, record: dict) -> "Scored":
        return cls(Point(**record["point"]), dict(record["means"]), list(record["abpc"]), record["stage"],
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
        nearest = min(range(len(values)), key=lambda i: abs(math.log10(values[i] + 1e-3) - math.log10(current + 1e-3)))
        return [values[nearest]]
    i = list(values).index(current)
    return [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values)]


def grid(layers: int) -> List[Point]:
    """Stage one: softmax rule x lower-layer rule (in the lower half of the encoder)."""
    half = max(1, layers // 2)
    lowers = [Point(), Point(lower="gamma", lower_layers=half, gamma=0.1), Point(lower="gamma", lower_layers=half, gamma=1.0),
              Point(lower="zplus", lower_layers=half)]
    return [replace(p, softmax=s) for s in ("taylor", "detach") for p in lowers]


def neighbours(point: Point, axis: str, layers: int) -> List[Point]:
    """Stage two: the candidates that change ``axis`` of ``point``."""
    if axis == "lower":
        k = point.lower_layers or max(1, layers // 2)
        return [replace(point, lower=rule, lower_layers=0 if rule == "none" else k)
                for rule in LOWER_RULES if rule != point.lower]
    if axis == "lower_layers":
        if point.lower == "none":
            return []
        return [replace(point, lower_layers=k) for k in range(1, layers + 1) if k != point.lower_layers]
    if axis == "gamma":
        return [replace(point, gamma=g) for g in _values_around(GAMMAS, point.gamma)] if point.lower == "gamma" else []
    if axis == "beta":
        return ([replace(point, beta=b) for b in _values_around(BETAS, point.beta)]
                if point.lower == "contribution_alpha_beta" else [])
    if axis == "epsilon":
        return [replace(point, epsilon=e) for e in EPSILONS if e != point.epsilon]
    choices = {"softmax": ("taylor", "detach"), "layer_norm": ("detach_std", "jacobian"),
               "bilinear": ("uniform", "jacobian"), "activation": ("identity", "jacobian"),
               "token_parts": ("all", "word")}[axis]
    return [replace(point, **{axis: value}) for value in choices if value != getattr(point, axis)]


AXES = ("lower", "lower_layers", "gamma", "beta", "epsilon", "softmax", "layer_norm", "bilinear", "activation",
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
