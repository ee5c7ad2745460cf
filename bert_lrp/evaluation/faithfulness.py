"""Faithfulness of attribution methods: word deletion, MoRF/LeRF curves, ABPC, ERASER AOPC.

Protocols (all on the non-special word pieces of each example, ranked by the method's token
score for the *predicted* class; ties broken by position; ``random`` ranks by seeded noise):

* **Word deletion** (Wu & Ong 2021, the original BERT-LRP notebook): examples the model classifies
  correctly and that have at least 10 tokens; the top-k tokens (k = 1..10) get id 0 ([PAD]) with
  the attention mask unchanged; accuracy on the kept set after deletion (1.0 at k = 0).
* **MoRF / LeRF**: tokens replaced by [MASK] most relevant first (MoRF) or least relevant first
  (LeRF); after masking round(f * n) tokens (half up) for f = 0, 0.1, ..., 1 we record
  p(predicted class) and its logit. **ABPC** = area under LeRF - area under MoRF (trapezoid over
  the fraction axis); larger is better.
* **ERASER comprehensiveness / sufficiency** (DeYoung et al. 2020) as AOPC over the top
  1, 5, 10, 20, 50 % of tokens (k = ceil(q * n), at least 1): comprehensiveness
  p(y|x) - p(y|x with the top k masked), larger is better; sufficiency p(y|x) - p(y|only the top k,
  the rest masked), smaller is better.

``bert-lrp evaluate`` (:mod:`bert_lrp.cli.evaluate`, :func:`run_evaluation`) streams one JSON line per example (flush + fsync), resumes an interrupted run,
shards examples by index under ``torchrun`` (gloo) and merges on rank 0.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from .._jsonl import JsonlWriter, barrier, read_records
from ..attribution import registry
from ..errors import BertLrpError, RequestError
from ..output import atomic_write_texts, check_resume, file_fingerprint, write_run
from .cost import Cost, measured

STEPS = 10                       # MoRF/LeRF: fractions 0, 0.1, ..., 1.0
FRACTIONS = [i / STEPS for i in range(STEPS + 1)]
AOPC_PERCENTS = (1, 5, 10, 20, 50)
DELETION_K = tuple(range(1, 11))
MIN_DELETION_TOKENS = 10
RANDOM = "random"

Row = Tuple[Tuple[int, ...], Tuple[int, ...]]        # (input ids, token type ids), unpadded
Lookup = Callable[[Row], torch.Tensor]               # row -> logits [classes]


# ------------------------------------------------------------------ counts and rankings
def count_for_fraction(step: int, n: int, steps: int = STEPS) -> int:
    """round(step / steps * n), halves rounded up, in exact integer arithmetic."""
    return (2 * step * n + steps) // (2 * steps)


def count_for_percent(percent: int, n: int) -> int:
    """ceil(percent / 100 * n), at least 1 (for n >= 1)."""
    return max(1, (percent * n + 99) // 100) if n else 0


def ranking(scores: Sequence[float], positions: Sequence[int], most_relevant_first: bool = True) -> List[int]:
    """``positions`` ordered by score (descending or ascending); ties keep position order."""
    sign = -1.0 if most_relevant_first else 1.0
    order = sorted(range(len(positions)), key=lambda i: (sign * float(scores[i]), i))
    return [positions[i] for i in order]


def replaced(ids: Sequence[int], positions: Iterable[int], value: int) -> Tuple[int, ...]:
    out = list(ids)
    for p in positions:
        out[p] = value
    return tuple(out)


def trapezoid(values: Sequence[float], dx: float = 1.0 / STEPS) -> float:
    return float(sum((a + b) / 2 for a, b in zip(values[:-1], values[1:])) * dx)


# ------------------------------------------------------------------ one example
@dataclass
class Example:
    index: int
    input_ids: Tuple[int, ...]         # unpadded, with [CLS] ... [SEP]
    token_type_ids: Tuple[int, ...]
    candidates: List[int]              # positions of the non-special word pieces (a token classifier: but the target's)
    label: Optional[int]
    target_position: Optional[int] = None  # a token classifier: the piece whose label is explained


def at_target(example: Example, logits: torch.Tensor) -> torch.Tensor:
    """The logits ``[classes]`` an example's metrics read: the row's (sequence classifier) or its
    target piece's (token classifier, ``logits [seq, classes]``)."""
    return logits[example.target_position] if example.target_position is not None and logits.dim() == 2 else logits


def example_metrics(example: Example, scores: Sequence[float], predicted: int, lookup: Lookup,
                    pad_id: int, mask_id: int) -> dict:
    """All metrics of one method on one example. ``scores`` is indexed by token position;
    ``lookup(row)`` returns the model's logits for an unpadded row."""
    types = example.token_type_ids
    candidates = example.candidates
    n = len(candidates)
    cand_scores = [float(scores[p]) for p in candidates]
    top = ranking(cand_scores, candidates, True)
    bottom = ranking(cand_scores, candidates, False)

    def probe(ids: Tuple[int, ...]) -> Tuple[float, float]:
        logits = at_target(example, lookup((ids, types))).double()
        return float(torch.softmax(logits, -1)[predicted]), float(logits[predicted])

    original_p, _ = probe(tuple(example.input_ids))
    morf = [probe(replaced(example.input_ids, top[:count_for_fraction(s, n)], mask_id)) for s in range(STEPS + 1)]
    lerf = [probe(replaced(example.input_ids, bottom[:count_for_fraction(s, n)], mask_id)) for s in range(STEPS + 1)]
    comprehensiveness, sufficiency = [], []
    for percent in AOPC_PERCENTS:
        k = count_for_percent(percent, n)
        comprehensiveness.append(original_p - probe(replaced(example.input_ids, top[:k], mask_id))[0])
        sufficiency.append(original_p - probe(replaced(example.input_ids, top[k:], mask_id))[0])
    record = {
        "morf_p": [p for p, _ in morf], "lerf_p": [p for p, _ in lerf],
        "morf_logit": [v for _, v in morf], "lerf_logit": [v for _, v in lerf],
        "comprehensiveness": comprehensiveness, "sufficiency": sufficiency,
        "deletion_correct": None,
    }
    record["abpc_p"] = trapezoid(record["lerf_p"]) - trapezoid(record["morf_p"])
    record["abpc_logit"] = trapezoid(record["lerf_logit"]) - trapezoid(record["morf_logit"])
    record["comprehensiveness_aopc"] = sum(comprehensiveness) / len(comprehensiveness)
    record["sufficiency_aopc"] = sum(sufficiency) / len(sufficiency)
    if example.label is not None and predicted == example.label and n >= MIN_DELETION_TOKENS:
        record["deletion_correct"] = [
            bool(int(at_target(example, lookup((replaced(example.input_ids, top[:k], pad_id), types))).argmax())
                 == example.label)
            for k in DELETION_K]
    return record


def random_scores(seed: int, index: int, length: int) -> torch.Tensor:
    """Seeded noise per example: identical however the examples are batched or sharded."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return torch.rand(length, generator=generator, dtype=torch.float64)


class RowCache:
    """Logits of unpadded rows; ``run`` forwards the missing ones grouped by length."""

    def __init__(self, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], rows_per_forward: int = 128):
        self.forward = forward
        self.rows_per_forward = max(1, rows_per_forward)
        self.logits: Dict[Row, torch.Tensor] = {}
        self.pending: Dict[Row, None] = {}
        self.forward_rows = 0
        self.classes = 2

    def request(self, row: Row) -> torch.Tensor:
        """Lookup used while planning: remember the row, return placeholder logits."""
        if row not in self.logits:
            self.pending[row] = None
        return torch.zeros(self.classes)

    def __call__(self, row: Row) -> torch.Tensor:
        return self.logits[row]

    def run(self) -> None:
        by_length: Dict[int, List[Row]] = {}
        for row in self.pending:
            by_length.setdefault(len(row[0]), []).append(row)
        for length in sorted(by_length):
            rows = by_length[length]
            for first in range(0, len(rows), self.rows_per_forward):
                chunk = rows[first:first + self.rows_per_forward]
                ids = torch.tensor([r[0] for r in chunk], dtype=torch.long)
                types = torch.tensor([r[1] for r in chunk], dtype=torch.long)
                logits = self.forward(ids, types).detach().float()
                self.forward_rows += len(chunk)
                self.classes = logits.shape[-1]
                for row, value in zip(chunk, logits):
                    self.logits[row] = value
        self.pending.clear()

    def clear(self) -> None:
        self.logits.clear()
        self.pending.clear()


def model_forward(model) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def forward(ids: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            output = model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=types)
        return output.logits if hasattr(output, "logits") else output[0]
    return forward


def evaluate_examples(examples: Sequence[Example], methods: Sequence[str], attribute, forward,
                      pad_id: int, mask_id: int, seed: int = 0, rows_per_forward: int = 128) -> List[dict]:
    """Records for a group of examples. ``attribute(examples, predicted) -> {method: [scores per
    example, indexed by position]}``; ``forward(ids, types) -> logits`` for unpadded batches."""
    cache = RowCache(forward, rows_per_forward)
    for example in examples:
        cache.request((tuple(example.input_ids), tuple(example.token_type_ids)))
    cache.run()
    originals = [at_target(x, cache((tuple(x.input_ids), tuple(x.token_type_ids)))) for x in examples]
    predicted = [int(o.argmax()) for o in originals]
    model_methods = [m for m in methods if m != RANDOM]
    scores = attribute(examples, predicted) if model_methods else {}
    if RANDOM in methods:
        scores[RANDOM] = [random_scores(seed, x.index, len(x.input_ids)) for x in examples]
    for lookup in (cache.request, cache):
        if lookup is cache:
            cache.run()
        results = []
        for i, example in enumerate(examples):
            per_method = {m: example_metrics(example, scores[m][i], predicted[i], lookup, pad_id, mask_id)
                          for m in methods}
            probabilities = torch.softmax(originals[i].double(), -1)
            results.append({
                "index": example.index, "n_tokens": len(example.candidates), "label": example.label,
                "prediction": predicted[i], "p_prediction": float(probabilities[predicted[i]]),
                "logits": [float(v) for v in originals[i]], "methods": per_method})
    return results


# ------------------------------------------------------------------ aggregation and output
def _mean(values: Sequence[float]) -> Optional[float]:
    values = list(values)
    return sum(values) / len(values) if values else None


def _mean_curve(curves: Sequence[Sequence[float]]) -> List[float]:
    return [sum(c[i] for c in curves) / len(curves) for i in range(len(curves[0]))] if curves else []


def aggregate(records: Sequence[dict], methods: Sequence[str]) -> dict:
    """Means over examples (curves pointwise; ABPC and AOPC per example, then averaged)."""
    eligible = [r for r in records if r["methods"][methods[0]]["deletion_correct"] is not None] if methods else []
    labelled = [r for r in records if r["label"] is not None]
    summary = {
        "examples": len(records),
        "accuracy": _mean([float(r["prediction"] == r["label"]) for r in labelled]),
        "deletion_examples": len(eligible),
        "fractions": FRACTIONS, "deletion_k": [0, *DELETION_K], "aopc_percents": list(AOPC_PERCENTS),
        "methods": {},
    }
    for method in methods:
        entries = [r["methods"][method] for r in records]
        deletion = [r["methods"][method]["deletion_correct"] for r in eligible]
        summary["methods"][method] = {
            "deletion_accuracy": [1.0] + [sum(d[k] for d in deletion) / len(deletion) for k in range(len(DELETION_K))]
            if deletion else [],
            "morf_p": _mean_curve([e["morf_p"] for e in entries]),
            "lerf_p": _mean_curve([e["lerf_p"] for e in entries]),
            "morf_logit": _mean_curve([e["morf_logit"] for e in entries]),
            "lerf_logit": _mean_curve([e["lerf_logit"] for e in entries]),
            "abpc_p": _mean(e["abpc_p"] for e in entries),
            "abpc_logit": _mean(e["abpc_logit"] for e in entries),
            "comprehensiveness": _mean_curve([e["comprehensiveness"] for e in entries]),
            "sufficiency": _mean_curve([e["sufficiency"] for e in entries]),
            "comprehensiveness_aopc": _mean(e["comprehensiveness_aopc"] for e in entries),
            "sufficiency_aopc": _mean(e["sufficiency_aopc"] for e in entries),
        }
    return summary


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(summary: dict) -> str:
    from ..attribution.registry import label as method_title

    lines = [
        f"{summary['examples']} examples (accuracy {_fmt(summary['accuracy'])}); word deletion on the "
        f"{summary['deletion_examples']} correctly classified examples with >= {MIN_DELETION_TOKENS} tokens."
        + (f" Layers skipped: {', '.join(map(str, summary['settings']['skip_layers']))} (the accuracy is "
           "without them)." if summary.get("settings", {}).get("skip_layers") else ""),
        "",
        "| method | deletion acc. k=1 / 5 / 10 (lower is better) | MoRF AUC p (lower) | LeRF AUC p (higher) "
        "| ABPC p (higher) | ABPC logit (higher) | comprehensiveness AOPC (higher) | sufficiency AOPC (lower) "
        "| cost: passes fwd + bwd, ms per explanation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, m in summary["methods"].items():
        deletion = m["deletion_accuracy"]
        deletion_text = " / ".join(_fmt(deletion[k]) for k in (1, 5, 10)) if deletion else "n/a"
        lines.append(f"| {method_title(method)} | {deletion_text} | {_fmt(trapezoid(m['morf_p']))} | "
                     f"{_fmt(trapezoid(m['lerf_p']))} | {_fmt(m['abpc_p'])} | {_fmt(m['abpc_logit'])} | "
                     f"{_fmt(m['comprehensiveness_aopc'])} | {_fmt(m['sufficiency_aopc'])} | "
                     f"{cost_text(summary.get('cost', {}).get(method))} |")
    return "\n".join(lines) + "\n"




def cost_text(cost: Optional[dict]) -> str:
    """``"2050 + 0, 912.4 ms"`` from a :meth:`Cost.per_explanation` record (``-`` without one)."""
    if not cost:
        return "-"
    return f"{cost['forward_passes']:.0f} + {cost['backward_passes']:.0f}, {cost['ms']:.1f} ms"


def curves_svg(summary: dict) -> str:
    """Three panels: MoRF p, LeRF p (x: fraction masked) and word-deletion accuracy (x: k)."""
    from html import escape

    from ..attribution.registry import label as method_title

    panels = [("MoRF: p(predicted) vs fraction masked", "morf_p", FRACTIONS),
              ("LeRF: p(predicted) vs fraction masked", "lerf_p", FRACTIONS),
              ("Word deletion: accuracy vs k", "deletion_accuracy", list(range(len(DELETION_K) + 1)))]
    width, height, pad = 330, 260, 40
    total_width = width * len(panels) + 160
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" height="{height + 20}" '
           f'viewBox="0 0 {total_width} {height + 20}" font-family="sans-serif" font-size="11">',
           f'<rect width="{total_width}" height="{height + 20}" fill="white"/>']
    for number, (title, key, xs) in enumerate(panels):
        x0 = number * width + pad
        plot_w, plot_h, y0 = width - pad - 10, height - 2 * pad, pad
        out.append(f'<text x="{x0}" y="20" font-size="12">{escape(title)}</text>')
        out.append(f'<rect x="{x0}" y="{y0}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>')
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = y0 + plot_h * (1 - tick)
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
        span = xs[-1] - xs[0] or 1
        for tick in (xs[0], xs[len(xs) // 2], xs[-1]):
            x = x0 + plot_w * (tick - xs[0]) / span
            out.append(f'<text x="{x:.1f}" y="{y0 + plot_h + 14}" text-anchor="middle">{tick:g}</text>')
        for method, m in summary["methods"].items():
            values = m.get(key) or []
            if not values:
                continue
            points = " ".join(f"{x0 + plot_w * (x - xs[0]) / span:.1f},{y0 + plot_h * (1 - max(0.0, min(1.0, v))):.1f}"
                              for x, v in zip(xs, values))
            dash = ' stroke-dasharray="4 3"' if method == RANDOM else ""
            out.append(f'<polyline points="{points}" fill="none" stroke="{registry.color(method)}" '
                       f'stroke-width="1.8"{dash}/>')
    legend_x = width * len(panels) + 10
    for i, method in enumerate(summary["methods"]):
        y = 50 + 18 * i
        out.append(f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 20}" y2="{y}" stroke="{registry.color(method)}" '
                   f'stroke-width="2"/><text x="{legend_x + 26}" y="{y + 4}">{escape(method_title(method))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ streaming and resuming
PART_PATTERN = "examples.part*.jsonl"
RUN_FILE = "run.json"  # the run record (bert_lrp.output.RunRecord): inputs, weights and settings
OUTPUT_FILES = (RUN_FILE, "examples.jsonl", "results.json", "results.md", "curves.svg")  # besides the parts


@dataclass
class RunPlace:
    """Where an evaluation writes and what it resumes: the ``out`` folder, the run ``record``
    (:meth:`bert_lrp.output.RunRecord.to_json`: the data's and the weights' fingerprints, the
    settings), this process's ``rank`` of ``world`` (``torchrun``)."""

    out: Path
    record: dict
    rank: int = 0
    world: int = 1

    @property
    def settings(self) -> dict:
        return self.record["settings"]

    def start(self) -> None:
        """Rank 0: write the run record before the first result; an earlier run with another
        record (the front-end let it be discarded: ``--overwrite``) loses its results first.
        Every rank waits for it."""
        barrier(self.world)
        run_file = self.out / RUN_FILE
        if self.rank == 0 and check_resume("out", self.out, run_file, self.record, overwrite=True) is None:
            for part in self.out.glob(PART_PATTERN):
                part.unlink()
            write_run(run_file, self.record)
        barrier(self.world)


@dataclass(frozen=True)
class Scoring:
    """How the metrics score: ``ranking`` (signed or abs), the ``seed`` of the random baseline,
    perturbed rows per forward pass."""

    ranking: str = "signed"
    seed: int = 0
    rows_per_forward: int = 128


def finished_records(out: Path) -> Dict[int, dict]:
    done: Dict[int, dict] = {}
    for part in sorted(out.glob(PART_PATTERN)):
        for record in read_records(part):
            done.setdefault(int(record["index"]), record)
    return done


# ------------------------------------------------------------------ data
def read_data_examples(path: str, limit: Optional[int] = None, field: str = "data"):
    """The examples of a data file, read by the one table reader of every command
    (:func:`bert_lrp.data.read_table`): a ``.tsv`` (or ``.csv``/``.jsonl``) with a header naming a
    text column (``sentence``, ``sentence1``, ``text``) and optionally ``label``. Every problem is a
    :class:`bert_lrp.data.DataError` naming the file and the line; ``field`` names ``path``."""
    from ..data import read_table

    examples = read_table(path, label_optional=True, field=field)
    return examples if limit is None else examples[:limit]


def data_labels(examples, label2id: Dict[str, int]) -> List[Optional[int]]:
    """Each example's label as a class id: a label name of the model (``positive``) or an id
    (``1``); anything else is a :class:`bert_lrp.data.DataError` naming file and line."""
    from ..data import DataError

    ids: List[Optional[int]] = []
    count = len(label2id)
    for example in examples:
        value = example.label
        if value is None:
            ids.append(None)
        elif value in label2id:
            ids.append(int(label2id[value]))
        elif value.isdigit() and int(value) < count:
            ids.append(int(value))
        else:
            known = ", ".join(f"{name} ({index})" for name, index in label2id.items())
            raise DataError(f"{example.source}, line {example.line}: unknown label {value!r}; the model's "
                            f"labels are {known} (give the name or the id)")
    return ids


def read_data(path: str, label2id: Dict[str, int], limit: Optional[int] = None) -> List[Tuple[str, Optional[int]]]:
    """``(sentence, label id or None)`` per example of ``path`` (see :func:`read_data_examples`)."""
    examples = read_data_examples(path, limit)
    return [(example.text, label) for example, label in zip(examples, data_labels(examples, label2id))]


# ------------------------------------------------------------------ the run
def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file or lies under one (:class:`RequestError` on ``out``)."""
    if out.exists() and not out.is_dir():
        raise RequestError("out", f"{out}: is a file, expected a folder")
    parent = out.parent.resolve()
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RequestError("out", f"{out}: {parent} is a file, not a folder")


def data_fingerprint(path: str) -> str:
    """The first 16 hex digits of the file's sha256 (a run's settings name the data by content)."""
    return file_fingerprint(path)


def remove_unstarted_run(out: Path) -> None:
    """In a folder this run created: if no example was finished, remove ``run.json`` and the empty
    record files, so that the folder is empty and can go (with results, it stays to be resumed)."""
    parts = list(out.glob(PART_PATTERN))
    if any(part.stat().st_size for part in parts):
        return
    for path in [*parts, out / RUN_FILE]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def encode_examples(tokenizer, prepared, data: Sequence[Tuple[str, Optional[int]]], indices: Sequence[int],
                    command: str) -> Tuple[List[Example], Dict[int, object]]:
    """The :class:`Example` (unpadded ids, word-piece positions, label) and the road's encoded row
    of each ``data[i]`` for ``i`` in ``indices``, sorted by length (similar lengths share an
    attribution batch); warnings (a text cut to the model's length) go to stderr under ``command``."""
    from ..attribution.road import TextInput, encode_text

    examples: List[Example] = []
    rows: Dict[int, object] = {}
    warn = lambda message: print(f"{command}: warning: {message}", file=sys.stderr)  # noqa: E731
    for i in indices:
        row, _ = encode_text(tokenizer, prepared, TextInput(data[i][0], None, f"example {i + 1}"), i, warn)
        length = len(row.tokens[0])
        ids = tuple(int(v) for v in row["input_ids"][0, :length])
        types = tuple(int(v) for v in row["token_type_ids"][0, :length])
        candidates = [p for p in range(length) if row.word_ids[0][p] is not None]
        examples.append(Example(i, ids, types, candidates, data[i][1]))
        rows[i] = row
    examples.sort(key=lambda x: (len(x.input_ids), x.index))
    return examples, rows


def data_text(text) -> str:
    """A data item's text: the sentence, or a CoNLL sentence's words joined by spaces."""
    return text if isinstance(text, str) else " ".join(text)


SKIPPED_NO_ENTITY = "no word predicted as an entity"


def token_examples(model, tokenizer, prepared, data: Sequence[Tuple[Sequence[str], Optional[Sequence[str]]]],
                   indices: Sequence[int], command: str, rows_per_forward: int = 128
                   ) -> Tuple[List[Example], Dict[int, object]]:
    """Examples of a token classifier: ``data[i]`` is a CoNLL sentence ``(words, tags or None)``.

    The sentence is read as its words joined by spaces (through the road); the explained piece is
    the first piece of the first word the model labels as an entity (not ``O``; without an ``O``
    label, not label 0), the metrics read that piece's label probability, and every other word's
    pieces are the candidates to mask. ``label`` is the word's gold tag (for word deletion). A
    sentence with no word predicted as an entity gives no example."""
    from ..attribution.road import TextInput, encode_text

    label2id = model.config.label2id
    outside = int(label2id.get("O", 0))
    warn = lambda message: print(f"{command}: warning: {message}", file=sys.stderr)  # noqa: E731
    cache = RowCache(model_forward(model), rows_per_forward)
    encoded = {}
    for i in indices:
        words, _ = data[i]
        row, _ = encode_text(tokenizer, prepared, TextInput(" ".join(words), None, f"sentence {i + 1}"), i, warn)
        length = len(row.tokens[0])
        ids = tuple(int(v) for v in row["input_ids"][0, :length])
        types = tuple(int(v) for v in row["token_type_ids"][0, :length])
        starts, position = [], 0
        for word in words:  # each CoNLL word's character span in the joined text
            starts.append((position, position + len(word)))
            position += len(word) + 1
        pieces = [[p for p in range(length) if row.word_ids[0][p] is not None and a <= row.offsets[0][p][0] < b]
                  for a, b in starts]
        encoded[i] = (row, ids, types, pieces)
        cache.request((ids, types))
    cache.run()
    examples: List[Example] = []
    rows: Dict[int, object] = {}
    for i in indices:
        row, ids, types, pieces = encoded[i]
        logits = cache((ids, types))
        word = next((w for w, p in enumerate(pieces) if p and int(logits[p[0]].argmax()) != outside), None)
        if word is None:
            continue
        tags = data[i][1]
        label = int(label2id[tags[word]]) if tags is not None and tags[word] in label2id else None
        candidates = [p for p in range(len(ids)) if row.word_ids[0][p] is not None and p not in pieces[word]]
        examples.append(Example(i, ids, types, candidates, label, pieces[word][0]))
        rows[i] = row
    examples.sort(key=lambda x: (len(x.input_ids), x.index))
    return examples, rows


def build_examples(model, tokenizer, prepared, data, indices: Sequence[int], command: str,
                   rows_per_forward: int = 128) -> Tuple[List[Example], Dict[int, object]]:
    """:func:`token_examples` for a token classifier, else :func:`encode_examples`."""
    if prepared.task == "token":
        return token_examples(model, tokenizer, prepared, data, indices, command, rows_per_forward)
    return encode_examples(tokenizer, prepared, data, indices, command)


def method_scores(model, prepared, rows: Dict[int, object], group: Sequence[Example], predicted: Sequence[int],
                  method: str, options: Optional[Dict[str, object]] = None, ranking_mode: str = "signed"
                  ) -> List[torch.Tensor]:
    """``method``'s token scores ``[length]`` (float64) for each example of ``group``, explaining
    its ``predicted`` class, in one pass of the road's collated batch: the plan's ``method``
    alone (checked once for the run), or ``method`` with other ``options`` (``tune-lrp``'s
    candidate composites, checked per call)."""
    from ..attribution.explain import plan_methods, run_methods
    from ..attribution.road import collate

    batch = collate([rows[x.index] for x in group], prepared.pad_id, prepared.pad_token)
    target = [label if x.target_position is None else (x.target_position, label) for x, label in zip(group, predicted)]
    plan = prepared.method_plan.only(method) if options is None else plan_methods(model, [method], options)
    values = run_methods(model, batch, plan, target).scores[method].detach().double()
    if ranking_mode == "abs":
        values = values.abs()
    return [values[row, :len(x.input_ids)] for row, x in enumerate(group)]


def run_evaluation(model, tokenizer, data: Sequence[Tuple[str, Optional[int]]], methods: List[str], request,
                   place: RunPlace, scoring: Scoring = Scoring(), progress: bool = True,
                   limit: Optional[int] = None) -> int:
    """Evaluate ``methods`` (``random`` included) on ``data`` (text, label id or None) into
    ``place.out``: examples are tokenised, cut and batched by the road (:mod:`bert_lrp.attribution.road`)
    and explained with ``request``'s options, one ``explain`` call per method so that its cost is
    measured alone. Resumes from ``out``'s records; rank 0 merges and writes the tables."""
    from ..attribution.road import length_batches, prepare

    prepared = prepare(model, tokenizer, request)
    place.start()
    out, rank, world = place.out, place.rank, place.world
    done = finished_records(out)
    mine = [i for i in range(len(data)) if i % world == rank and i not in done]
    costs = {m: Cost() for m in methods if m != RANDOM}
    examples, rows = build_examples(model, tokenizer, prepared, data, mine, "bert-lrp evaluate",
                                    scoring.rows_per_forward)
    skipped = sorted(set(mine) - {x.index for x in examples})  # token classifiers: no predicted entity
    model_methods = [m for m in methods if m != RANDOM]
    pad_id = int(model.config.pad_token_id)

    def attribute(group: Sequence[Example], predicted: Sequence[int]) -> Dict[str, list]:
        from .variants import call

        results = {}
        for m in model_methods:  # one call per method: its cost is measured alone
            name, options = call(m, dict(request.options))  # a variant (shap[baseline=mask]): its own options
            with measured(model, costs[m], len(group)):
                results[m] = method_scores(model, prepared, rows, group, predicted, name, options, scoring.ranking)
        return results

    writer = JsonlWriter(out / f"examples.part{rank}.jsonl")
    for i in skipped:
        writer.write({"index": i, "skipped": SKIPPED_NO_ENTITY})
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(mine), desc=f"evaluate rank {rank}" if world > 1 else "evaluate",
                   position=rank, unit="ex", file=sys.stderr)
    started = time.time()
    forward = model_forward(model)
    lengths = {x.index: len(x.input_ids) for x in examples}
    by_index = {x.index: x for x in examples}
    try:
        for indices in length_batches([x.index for x in examples], lengths, request.batch_size, request.batch_tokens):
            group = [by_index[i] for i in indices]
            for record in sorted(evaluate_examples(group, methods, attribute, forward, pad_id,
                                                   tokenizer.mask_token_id, scoring.seed, scoring.rows_per_forward),
                                 key=lambda r: r["index"]):
                writer.write(record)
            if bar is not None:
                bar.update(len(group))
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    elapsed = time.time() - started
    barrier(world)
    if rank != 0:
        return 0
    write_results(out, finished_records(out), len(data), methods, {
        "settings": place.settings, "limit": limit, "world_size": world,
        "seconds_this_run_rank0": round(elapsed, 1),
        "cost": {m: c.per_explanation() for m, c in costs.items()},  # this run, rank 0
        "threads": torch.get_num_threads()})
    print(f"results in {out.resolve()}: results.md, results.json, curves.svg, examples.jsonl", file=sys.stderr)
    return 0


def write_results(out: Path, records: Dict[int, dict], total: int, methods: Sequence[str], about: dict) -> None:
    """Rank 0 at the end: every example's record merged in input order (``examples.jsonl``), the
    summary (``results.json``, with ``about``: settings, cost, ...), its table (``results.md``,
    also printed) and curves (``curves.svg``), all or nothing."""
    missing = [i for i in range(total) if i not in records]
    if missing:
        raise BertLrpError(f"{len(missing)} examples have no result in {out} (first: {missing[0]})")
    merged = [records[i] for i in range(total)]
    summary = aggregate([r for r in merged if "skipped" not in r], methods)
    summary["skipped"] = {"count": sum("skipped" in r for r in merged), "reason": SKIPPED_NO_ENTITY}
    summary.update(about)
    table = markdown_table(summary)
    atomic_write_texts({out / "examples.jsonl": "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in merged),
                        out / "results.json": json.dumps(summary, indent=1) + "\n",
                        out / "results.md": table, out / "curves.svg": curves_svg(summary)})
    print(table)
