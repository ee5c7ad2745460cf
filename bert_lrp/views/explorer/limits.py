"""What one explorer request may cost, measured before it runs (docs/serve_safety_limits.md says
why each number was chosen).

A request's *cost* is forward rows x tokens: the rows every method sends through the model for the
text (the registry's estimate, :meth:`~bert_lrp.attribution.explain.MethodPlan.forward_rows`, with
the text's own words and windows) times the tokens of each row. :func:`text_cost` computes it per
*group*, in the order the streamed explain runs them (:func:`method_groups`: every shared-pass
method in one group, then each other method alone), so the plan the page shows before a run is the
run. A request over :data:`DEFAULT_BUDGET` is refused with 413 naming the option that made it so
(:func:`budget_error`).

Memory: one forward chunk holds ``rows x tokens`` activations; :func:`chunk_options` keeps the
chunk options (``ig_batch``, ``rows_per_forward``) under :data:`CHUNK_ROW_TOKENS` (about 1 GB for
a BERT-base at 512 tokens): given larger, 413; not given, the explorer lowers the default for a
long text (the document's settings say the value used).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...attribution import registry
from ...attribution.explain import MethodPlan
from ...attribution.plan import Plan
from ...attribution.records import ALL
from ...attribution.windows import window_positions
from .errors import ApiError

MAX_WINDOWS = 16                 # a text may span at most this many windows of the model's positions
DEFAULT_BUDGET = 1_200_000       # forward rows x tokens of one request (or one uploaded text)
CHUNK_ROW_TOKENS = 15 * 512      # rows x tokens of one forward chunk: ~66 MB a row at 512 tokens -> < 1 GB
CHUNK_OPTIONS = ("ig_batch", "rows_per_forward")
MAX_UPLOAD_BYTES = 1 << 20       # an uploaded data set: 1 MB ...
MAX_UPLOAD_LINES = 2_000         # ... and 2,000 texts
MAX_NAME = 200                   # characters of an upload's name
MAX_STORED_ROWS = 20_000         # rows of every data set held (the --data file's included)
MAX_STORED_BYTES = 64 << 20      # bytes of their records as JSON (about 3x that in memory)


@dataclass(frozen=True)
class Group:
    """Methods run together (one road call) and their estimated forward rows and cost."""

    methods: Tuple[str, ...]
    rows: int
    cost: int


@dataclass(frozen=True)
class TextCost:
    """The estimate of one text: ``groups`` in run order; ``tokens`` the widest row."""

    groups: Tuple[Group, ...]
    tokens: int

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)

    @property
    def cost(self) -> int:
        return sum(g.cost for g in self.groups)


def method_groups(plan: Plan) -> List[Tuple[str, ...]]:
    """The plan's methods in run order: every shared-pass method in ONE group (they share a pass),
    then each other method alone."""
    shared = tuple(m.name for m in plan.method_plan.methods if m.shared_pass)
    rest = [(m.name,) for m in plan.method_plan.methods if not m.shared_pass]
    return ([shared] if shared else []) + rest


def sub_plan(method_plan: MethodPlan, names: Sequence[str]) -> MethodPlan:
    """``method_plan`` restricted to the methods ``names`` (their composites and options kept)."""
    kept = tuple(m for m in method_plan.methods if m.name in names)
    jobs = tuple((c, tuple(m for m in ms if m.name in names)) for c, ms in method_plan.jobs)
    return MethodPlan(replace(method_plan.choice, methods=kept), tuple(j for j in jobs if j[1]),
                      method_plan.reductions)


def windows_of(encoding, plan: Plan) -> List[List[int]]:
    """The positions of each row the model reads for one encoded text: the whole text when it fits
    (a token classifier's text cut to the positions), else each window."""
    length = len(encoding.tokens[0])
    if length <= plan.limit:
        return [list(range(length))]
    if plan.task != "sequence":
        return [list(range(plan.limit))]
    return window_positions(encoding.sequence_ids[0], plan.limit, plan.window, plan.stride)[1]


def text_cost(plan: Plan, encoding) -> TextCost:
    """Rows and cost of explaining the encoded text with ``plan``, group by group."""
    rows_read = windows_of(encoding, plan)
    labels = len(plan.labels) if plan.target == ALL else 1
    word_keys = list(zip(encoding.sequence_ids[0], encoding.word_ids[0]))
    document = len(rows_read) if len(rows_read) > 1 and plan.target is None else 0  # the windows' label
    groups = []
    for names in method_groups(plan):
        part = sub_plan(plan.method_plan, names)
        rows = cost = 0
        for positions in rows_read:
            words = len({word_keys[p] for p in positions if word_keys[p][1] is not None})
            window_rows = part.forward_rows(words, labels) + (1 if document else 0)
            rows += window_rows
            cost += window_rows * len(positions)
        groups.append(Group(tuple(names), rows, cost))
    return TextCost(tuple(groups), max(len(p) for p in rows_read))


def budget_error(plan: Plan, encoding, cost: TextCost, budget: int, options: Dict[str, Any],
                 where: str = "the request") -> Optional[ApiError]:
    """A 413 naming the field that makes ``cost`` exceed ``budget`` (None when within): the given
    option whose default would save the most (``options.shap_exact_words``), else ``methods``."""
    if cost.cost <= budget:
        return None
    best: Optional[Tuple[int, str]] = None
    for name, value in options.items():
        option = registry.all_options().get(name)
        if option is None or option.kind is not int or value == option.default:
            continue
        lowered = dict(plan.options)
        lowered[name] = option.default
        try:
            choice = registry.check(plan.methods, lowered)
        except Exception:  # noqa: BLE001 -- a default that does not fit the others: not this option
            continue
        trial = replace(plan, method_plan=replace(plan.method_plan, choice=choice))
        saved = cost.cost - text_cost(trial, encoding).cost
        if saved > 0 and (best is None or saved > best[0]):
            best = (saved, name)
    field = f"options.{best[1]}" if best else "methods"
    blame = f"lower {field} (given {options[best[1]]})" if best else "choose fewer or cheaper methods or a shorter text"
    return ApiError(413, f"{where} costs {cost.cost:,} forward rows x tokens ({cost.rows:,} rows of up to "
                         f"{cost.tokens:,} tokens); the explorer's budget is {budget:,}: {blame}", field)


def chunk_options(options: Dict[str, Any], methods: Sequence[str], tokens: int) -> Dict[str, Any]:
    """``options`` with the chunk options the ``methods`` read bounded for rows of ``tokens``:
    a given value over ``CHUNK_ROW_TOKENS / tokens`` is a 413 naming it; a default over it is
    lowered (the settings of the answer show the value used)."""
    most = max(1, CHUNK_ROW_TOKENS // max(tokens, 1))
    read = {o.name: o for name in methods for o in _method_options(name)}
    out = dict(options)
    for name in CHUNK_OPTIONS:
        if name not in read:
            continue
        if name in options:
            try:
                value = read[name].check(options[name])  # as the plan will read it ("4096" too)
            except Exception:  # noqa: BLE001 -- a wrong value: the plan refuses it, naming the option
                continue
            if value > most:
                raise ApiError(413, f"{name} {value:,} holds {value:,} rows of {tokens:,} tokens in one forward "
                                    f"chunk; the explorer allows at most {most:,} for this text "
                                    f"({CHUNK_ROW_TOKENS:,} rows x tokens, about 1 GB)", f"options.{name}")
        elif read[name].default > most:
            out[name] = most
    return out


def _method_options(name: str):
    try:
        return registry.get(name).options
    except Exception:  # noqa: BLE001 -- an unknown method is refused by the plan, with its field
        return ()


__all__ = ["CHUNK_ROW_TOKENS", "DEFAULT_BUDGET", "Group", "MAX_WINDOWS", "TextCost", "budget_error",
           "chunk_options", "method_groups", "sub_plan", "text_cost", "windows_of"]
