"""Paired comparison of methods from ``bert-lrp evaluate`` runs on the same examples: each method's
means, and the mean difference to reference methods with its standard error over the same
examples (sd of the per-example differences / sqrt(n)), which is what decides whether one method
is ahead of another on a data set; the cost as each run measured it.

    python -m bert_lrp.evaluation.paired runs/a runs/b --against shap,lrp:attnlrp --out table.md

Several runs may be joined when they evaluated the same data file (by content) and the same
examples; a method evaluated by two runs is taken from the first.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..data import read_json, read_json_lines
from ..errors import InputFileError, RequestError, UsageError
from .faithfulness import cost_text

METRICS = (("abpc_p", "ABPC", "higher"), ("comprehensiveness_aopc", "comprehensiveness", "higher"),
           ("sufficiency_aopc", "sufficiency", "lower"))


def paired(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float]:
    """Mean of ``a - b`` and its standard error (sample sd / sqrt(n))."""
    differences = [x - y for x, y in zip(a, b)]
    n = len(differences)
    mean = sum(differences) / n
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(variance / n)


def load_runs(folders: Sequence[str], renames: Optional[Dict[Tuple[str, str], str]] = None
              ) -> Tuple[Dict[str, Dict[int, dict]], Dict[str, dict], dict]:
    """Per method: example index -> that method's record; per method: its cost; the first run's
    summary. ``renames[(folder, method)]`` names a method of one run otherwise (e.g. ``lrp:tuned``
    of a model folder holding another model's composite). Runs on other data, or on other
    examples, are refused naming the folder."""
    renames = renames or {}
    per_method: Dict[str, Dict[int, dict]] = {}
    costs: Dict[str, dict] = {}
    first_summary, data, indices = None, None, None
    for folder in folders:
        path = Path(folder)
        try:
            summary = read_json(path / "results.json")
            records = read_json_lines(path / "examples.jsonl")
        except (OSError, ValueError) as error:
            raise InputFileError(f"{path}: not a finished bert-lrp evaluate run ({error})") from None
        sha = summary.get("settings", {}).get("data_sha256")
        run_indices = sorted(r["index"] for r in records if "methods" in r)  # not the skipped
        if data is None:
            data, indices, first_summary = sha, run_indices, summary
        elif sha != data or run_indices != indices:
            raise UsageError(f"{path}: evaluated other data or other examples than {folders[0]}; paired differences "
                             "need the same examples")
        for method in summary["methods"]:
            name = renames.get((folder, method), method)
            if name in per_method:
                continue
            per_method[name] = {r["index"]: r["methods"][method] for r in records if "methods" in r}
            if method in summary.get("cost", {}):
                costs[name] = summary["cost"][method]
    return per_method, costs, first_summary or {}


def table(folders: Sequence[str], against: Sequence[str], title_of=None,
          renames: Optional[Dict[Tuple[str, str], str]] = None) -> str:
    """The markdown table: per method, each metric's mean, then ``method - reference`` (± its
    standard error) for each reference method and metric."""
    per_method, costs, summary = load_runs(folders, renames)
    missing = [m for m in against if m not in per_method]
    if missing:
        raise RequestError("against", f"{missing[0]}: no run evaluated it (methods: {', '.join(per_method)})")
    indices = sorted(next(iter(per_method.values())))
    title_of = title_of or (lambda m: m)
    header = ["method", *(f"{label} ({better})" for _, label, better in METRICS)]
    for reference in against:
        header += [f"{label} - {title_of(reference)}" for _, label, _ in METRICS]
    header.append("cost: passes fwd + bwd, ms per explanation")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, records in per_method.items():
        values = {key: [records[i][key] for i in indices] for key, _, _ in METRICS}
        row = [title_of(method)] + [f"{sum(v) / len(v):.4f}" for v in values.values()]
        for reference in against:
            for key, _, _ in METRICS:
                if method == reference:
                    row.append("-")
                    continue
                mean, error = paired(values[key], [per_method[reference][i][key] for i in indices])
                row.append(f"{mean:+.4f} ± {error:.4f}")
        row.append(cost_text(costs.get(method)))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"{len(indices)} examples (the same in every column); ± is the standard error of the paired "
                 "difference over those examples.")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bert_lrp.evaluation.paired", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="folders of finished bert-lrp evaluate runs")
    parser.add_argument("--against", default="shap", help="comma-separated reference methods (default shap)")
    parser.add_argument("--out", help="also write the table here (atomically)")
    parser.add_argument("--name", action="append", default=[], metavar="FOLDER,METHOD,NAME",
                        help="show METHOD of the run in FOLDER as NAME (repeatable)")
    args = parser.parse_args(argv)
    renames = {}
    for item in args.name:
        parts = item.split(",")
        if len(parts) != 3:
            raise RequestError("name", f"{item!r}: expected FOLDER,METHOD,NAME")
        renames[(parts[0], parts[1])] = parts[2]
    from .._io import atomic_write_text
    from ..attribution.registry import label

    text = table(args.runs, [m.strip() for m in args.against.split(",") if m.strip()], label, renames)
    if args.out:
        atomic_write_text(args.out, text)
    print(text)
    return 0


def command_line_message(error: RequestError) -> str:
    """A request error as this script's command line words it: the field as its option,
    ``--against lime: no run evaluated it``."""
    return f"--{error.field.replace('_', '-')} {error.message}"


if __name__ == "__main__":
    from ..errors import run_command

    sys.exit(run_command("paired", main, sys.argv[1:], show_request=command_line_message))
