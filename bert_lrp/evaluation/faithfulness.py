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

``evaluate_main`` streams one JSON line per example (flush + fsync), resumes an interrupted run,
shards examples by index under ``torchrun`` (gloo) and merges on rank 0.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from .._jsonl import JsonlWriter, barrier, rank_and_world, read_records
from ..attribution import registry
from ..errors import ArgumentParser, BertLrpError, InputFileError, UsageError
from ..rules.composites import LRP_PRESETS
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
    candidates: List[int]              # positions of the non-special word pieces
    label: Optional[int]


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
        logits = lookup((ids, types)).double()
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
            bool(int(lookup((replaced(example.input_ids, top[:k], pad_id), types)).argmax()) == example.label)
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
    originals = [cache((tuple(x.input_ids), tuple(x.token_type_ids))) for x in examples]
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


def finished_records(out: Path) -> Dict[int, dict]:
    done: Dict[int, dict] = {}
    for part in sorted(out.glob(PART_PATTERN)):
        for record in read_records(part):
            done.setdefault(int(record["index"]), record)
    return done


# ------------------------------------------------------------------ data
def read_data_examples(path: str, limit: Optional[int] = None):
    """The examples of a data file, read by the strict reader training uses
    (:func:`bert_lrp.training.data.read_table`): a ``.tsv`` (or ``.csv``/``.jsonl``) with a header naming a
    ``sentence`` column and optionally a ``label`` column. Every problem is a
    :class:`bert_lrp.training.data.DataError` naming the file and the line."""
    from ..training.data import read_table

    examples = read_table(path, text_column="sentence", label_column="label", label_optional=True)
    return examples if limit is None else examples[:limit]


def data_labels(examples, label2id: Dict[str, int]) -> List[Optional[int]]:
    """Each example's label as a class id: a label name of the model (``positive``) or an id
    (``1``); anything else is a :class:`bert_lrp.training.data.DataError` naming file and line."""
    from ..training.data import DataError

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


def _fingerprint(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------ the command
def build_parser() -> argparse.ArgumentParser:
    from ..cli.explain import DEFAULT_MODEL, positive_int

    parser = ArgumentParser(
        prog="bert-lrp evaluate", description=__doc__.split("\n\n")[0],
        epilog="Errors in the data file name the file and the line. Nothing is created in --out before the "
               "model and the data have been read and checked. Errors are one line on stderr (exit code 2: "
               "bad command line, 1: failure); bert-lrp --debug evaluate ... shows the traceback.")
    parser.add_argument("--model", metavar="DIR", help=f"model folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="UTF-8 TSV (or .csv/.jsonl) with a header naming a 'sentence' column and optionally a "
                             "'label' column (a label name of the model or its id), e.g. SST-2 dev.tsv")
    parser.add_argument("--methods", default="lrp,gi,gs,lat,rollout,ig",
                        help=f"comma-separated, from: {registry.describe()}; a random baseline is always added")
    parser.add_argument("--rule", default="attnlrp", choices=LRP_PRESETS,
                        help="LRP preset (default attnlrp)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the first N examples")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (resumed if it holds an earlier run with the same settings)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="examples per attribution batch")
    parser.add_argument("--rows-per-forward", type=positive_int, default=128, help="perturbed rows per forward pass")
    parser.add_argument("--ig-steps", type=positive_int, default=20,
                        help="integrated gradients: interpolation steps (default 20)")
    parser.add_argument("--ig-batch", type=positive_int, default=64, help="IG rows per pass (bounds memory)")
    parser.add_argument("--ranking", choices=["signed", "abs"], default="signed",
                        help="rank tokens by signed score (default) or by its absolute value")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random baseline and of the sampling methods (SHAP, LIME, SmoothGrad)")
    add_perturbation_options(parser)
    parser.add_argument("--threads", type=positive_int, help="torch threads per process")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--overwrite", action="store_true", help="discard an earlier run in --out with other settings")
    parser.add_argument("--skip-layers", metavar="LIST",
                        help="evaluate the model without these encoder layers, 1-based (e.g. 6 or 1,2; "
                             "bert_lrp.ablate.skip_layers); results.md's accuracy line names them")
    return parser


def add_perturbation_options(parser: argparse.ArgumentParser) -> None:
    """The options of occlusion, SHAP, LIME and SmoothGrad (``bert-lrp explain`` and ``evaluate``)."""
    from ..attribution import lime, shap, smoothgrad
    from ..attribution.perturbation import BASELINES

    for method in ("occlusion", "shap", "lime"):
        parser.add_argument(f"--{method}-baseline", choices=BASELINES, default="pad",
                            help=f"{method}: what replaces an absent word's pieces (default pad = [PAD]; "
                                 "mask, unk, or remove = drop them)")
    parser.add_argument("--shap-samples", type=positive_count, default=shap.DEFAULT_SAMPLES,
                        help=f"SHAP: KernelSHAP coalitions per text beyond --shap-exact-words words "
                             f"(default {shap.DEFAULT_SAMPLES})")
    parser.add_argument("--shap-exact-words", type=int, default=shap.DEFAULT_EXACT_WORDS,
                        help=f"SHAP: exact Shapley values (2^words forward rows) up to this many words "
                             f"(default {shap.DEFAULT_EXACT_WORDS})")
    parser.add_argument("--lime-samples", type=positive_count, default=lime.DEFAULT_SAMPLES,
                        help=f"LIME: perturbed rows per text (default {lime.DEFAULT_SAMPLES})")
    parser.add_argument("--smoothgrad-samples", type=positive_count, default=smoothgrad.DEFAULT_SAMPLES,
                        help=f"SmoothGrad: noisy copies per text (default {smoothgrad.DEFAULT_SAMPLES})")
    parser.add_argument("--smoothgrad-sigma", type=non_negative_float, default=smoothgrad.DEFAULT_SIGMA,
                        help="SmoothGrad: noise standard deviation as a fraction of the range of the text's "
                             f"embedding output (default {smoothgrad.DEFAULT_SIGMA})")


def positive_count(text: str) -> int:
    """argparse type: an integer >= 2 (sample counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: needs at least 2")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: needs a finite number >= 0")
    return value


def perturbation_options(args: argparse.Namespace) -> Dict[str, object]:
    """explain()'s options from the parsed command line (see :func:`add_perturbation_options`)."""
    return {"occlusion_baseline": args.occlusion_baseline, "shap_baseline": args.shap_baseline,
            "lime_baseline": args.lime_baseline, "shap_samples": args.shap_samples,
            "shap_exact_words": args.shap_exact_words, "lime_samples": args.lime_samples,
            "smoothgrad_samples": args.smoothgrad_samples, "smoothgrad_sigma": args.smoothgrad_sigma,
            "seed": args.seed}


def _used_options(methods: Sequence[str]) -> set:
    """The option names the given methods read (so run.json changes only when they matter)."""
    return {o for m in methods if m != RANDOM for o in registry.get(m).options}


def check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, expected a folder")
    parent = out.parent.resolve()
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, not a folder")


def previous_settings(path: Path, overwrite: bool) -> Optional[dict]:
    """The settings of an earlier run in ``--out`` (None if there is none, or it is unreadable and
    ``overwrite`` is set)."""
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        return values
    except (ValueError, UnicodeDecodeError) as error:
        if overwrite:
            return None
        raise InputFileError(f"{path}: unreadable settings of an earlier run ({error}); use another --out or "
                             "--overwrite") from None


def evaluate_main(argv: Optional[List[str]] = None) -> int:
    """``bert-lrp evaluate``. Raises on bad input (:mod:`bert_lrp.errors`); :func:`bert_lrp.cli.main`
    turns that into one line on stderr and an exit code."""
    from ..cli.explain import parse_methods, resolve_model_dir

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m for m in parse_methods(",".join(m for m in args.methods.split(",") if m.strip() != RANDOM))]
    directory = resolve_model_dir(args.model)
    if os.path.isdir(args.data):
        raise UsageError(f"--data {args.data}: is a folder, expected a data file")
    if not os.path.exists(args.data):
        raise UsageError(f"--data {args.data}: no such file")
    check_out_folder(Path(args.out))
    methods = methods + [RANDOM]
    rank, world = rank_and_world()
    try:
        return _evaluate(args, methods, directory, rank, world)
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _evaluate(args, methods: List[str], directory: Path, rank: int, world: int) -> int:
    """Read and check the data and the model, then create ``--out``; a folder this run created is
    removed again if it is still empty when the run fails."""
    from .._io import make_folders, remove_empty_folders
    from ..cli.explain import load_model

    data_examples = read_data_examples(args.data, args.limit)  # structure errors first: no model needed
    model, tokenizer = load_model(directory)
    labels = data_labels(data_examples, model.config.label2id)
    data = [(example.text, label) for example, label in zip(data_examples, labels)]
    from ..ablate import parse_layers, skip_layers

    skip = parse_layers(args.skip_layers, "--skip-layers", model.config.num_hidden_layers) if args.skip_layers else []
    out = Path(args.out)
    settings = {"model": str(directory.resolve()), "data": os.path.abspath(args.data),
                "data_sha256": _fingerprint(args.data), "methods": methods, "rule": args.rule,
                "ig_steps": args.ig_steps, "ranking": args.ranking, "seed": args.seed,
                **{k: v for k, v in perturbation_options(args).items() if k in _used_options(methods)}}
    if skip:  # only when given, so that the settings of earlier runs still match
        settings["skip_layers"] = skip
    previous = previous_settings(out / "run.json", args.overwrite)
    if previous is not None and previous != settings and not args.overwrite:
        raise UsageError(f"--out {out} holds a run with other settings ({out / 'run.json'}); use another --out "
                         "or --overwrite")
    created = make_folders(out)
    try:
        with skip_layers(model, skip, "--skip-layers"):
            return _run(args, methods, model, tokenizer, data, settings, out, rank, world)
    except BaseException:
        if created:
            _remove_unstarted_run(out)
        remove_empty_folders(created)
        raise


def _remove_unstarted_run(out: Path) -> None:
    """In a folder this run created: if no example was finished, remove ``run.json`` and the empty
    record files, so that the folder is empty and can go (with results, it stays to be resumed)."""
    parts = list(out.glob(PART_PATTERN))
    if any(part.stat().st_size for part in parts):
        return
    for path in [*parts, out / "run.json"]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _run(args, methods: List[str], model, tokenizer, data, settings: dict, out: Path, rank: int, world: int) -> int:
    from .._io import atomic_write_text
    from ..attribution.explain import explain

    settings_path = out / "run.json"
    barrier(world)
    if rank == 0 and (args.overwrite or not settings_path.is_file()):
        if previous_settings(settings_path, True) not in (None, settings):
            for part in out.glob(PART_PATTERN):
                part.unlink()
        atomic_write_text(settings_path, json.dumps(settings, indent=1) + "\n")
    barrier(world)

    done = finished_records(out)
    mine = [i for i in range(len(data)) if i % world == rank and i not in done]
    examples = []
    word_ids: Dict[int, list] = {}
    costs = {m: Cost() for m in methods if m != RANDOM}
    for i in mine:
        encoding = tokenizer(data[i][0])
        length = int(encoding["attention_mask"][0].sum())
        ids = tuple(int(v) for v in encoding["input_ids"][0, :length])
        types = tuple(int(v) for v in encoding["token_type_ids"][0, :length])
        candidates = [p for p in range(length) if encoding.word_ids[0][p] is not None]
        examples.append(Example(i, ids, types, candidates, data[i][1]))
        word_ids[i] = encoding.word_ids[0][:length]
    # length buckets: similar lengths share an attribution batch (little padding)
    examples.sort(key=lambda x: (len(x.input_ids), x.index))
    model_methods = [m for m in methods if m != RANDOM]
    pad_id = int(model.config.pad_token_id)

    def attribute(group: Sequence[Example], predicted: Sequence[int]) -> Dict[str, list]:
        width = max(len(x.input_ids) for x in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        types = torch.zeros((len(group), width), dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, x in enumerate(group):
            ids[row, :len(x.input_ids)] = torch.tensor(x.input_ids)
            types[row, :len(x.input_ids)] = torch.tensor(x.token_type_ids)
            mask[row, :len(x.input_ids)] = 1
        options = {**perturbation_options(args), "rows_per_forward": args.rows_per_forward,
                   "mask_token_id": tokenizer.mask_token_id, "unk_token_id": tokenizer.unk_token_id,
                   "word_ids": [word_ids[x.index] + [None] * (width - len(x.input_ids)) for x in group]}
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        results = {}
        for m in model_methods:  # one call per method: its cost is measured alone
            with measured(model, costs[m], len(group)):
                results[m] = explain(model, batch, [m], target=list(predicted), rule=args.rule,
                                     ig_steps=args.ig_steps, ig_internal_batch_size=args.ig_batch, options=options)
        scores = {}
        for m in model_methods:
            values = results[m].scores[m].detach().double()
            if args.ranking == "abs":
                values = values.abs()
            scores[m] = [values[row, :len(x.input_ids)] for row, x in enumerate(group)]
        return scores

    writer = JsonlWriter(out / f"examples.part{rank}.jsonl")
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=len(mine), desc=f"evaluate rank {rank}" if world > 1 else "evaluate",
                        position=rank, unit="ex", file=sys.stderr)
    started = time.time()
    forward = model_forward(model)
    try:
        for first in range(0, len(examples), max(1, args.batch_size)):
            group = examples[first:first + args.batch_size]
            for record in sorted(evaluate_examples(group, methods, attribute, forward, pad_id,
                                                   tokenizer.mask_token_id, args.seed, args.rows_per_forward),
                                 key=lambda r: r["index"]):
                writer.write(record)
            if progress is not None:
                progress.update(len(group))
    finally:
        writer.close()
        if progress is not None:
            progress.close()
    elapsed = time.time() - started
    barrier(world)
    if rank != 0:
        return 0
    records = finished_records(out)
    wanted = range(len(data))
    missing = [i for i in wanted if i not in records]
    if missing:
        raise BertLrpError(f"{len(missing)} examples have no result in {out} (first: {missing[0]})")
    merged = [records[i] for i in wanted]
    summary = aggregate(merged, methods)
    summary["settings"] = settings
    summary["limit"] = args.limit
    summary["world_size"] = world
    summary["seconds_this_run_rank0"] = round(elapsed, 1)
    summary["cost"] = {m: c.per_explanation() for m, c in costs.items()}  # this run, rank 0
    summary["threads"] = torch.get_num_threads()
    atomic_write_text(out / "examples.jsonl", "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in merged))
    atomic_write_text(out / "results.json", json.dumps(summary, indent=1) + "\n")
    table = markdown_table(summary)
    atomic_write_text(out / "results.md", table)
    atomic_write_text(out / "curves.svg", curves_svg(summary))
    print(table)
    print(f"results in {out.resolve()}: results.md, results.json, curves.svg, examples.jsonl", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ..cli import main as cli_main

    sys.exit(cli_main(["evaluate", *sys.argv[1:]]))
