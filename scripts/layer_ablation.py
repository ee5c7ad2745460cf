#!/usr/bin/env python3
"""Single-layer ablation table: a classifier's accuracy with each encoder layer removed in turn.

    python scripts/layer_ablation.py --model checkpoints/minilm-sst2 --data PATH/TO/SST-2/dev.tsv \\
        --json runs/layer-ablation.json

Rows: nothing removed, then layer 1, 2, ..., L removed (1-based; ``bert_lrp.ablate.skip_layers``).
Accuracy is :func:`bert_lrp.ablate.accuracy` (the data file read as ``bert-lrp evaluate --data``
reads it, scored by :func:`bert_lrp.training.metrics.accuracy`). Prints a Markdown table; ``--json``
also writes the numbers (atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

try:
    import bert_lrp  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bert_lrp.ablate import accuracy
from bert_lrp.errors import run_command


def markdown(rows: List[dict], layers: int) -> str:
    base = rows[0]["accuracy"]
    lines = ["| layer removed | accuracy | change (points) |", "|---|---:|---:|"]
    for row in rows:
        name = ", ".join(str(k) for k in row["skip_layers"]) or "none"
        change = "" if not row["skip_layers"] else f"{100 * (row['accuracy'] - base):+.2f}"
        lines.append(f"| {name} | {100 * row['accuracy']:.2f} % ({row['correct']}/{row['examples']}) | {change} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    from bert_lrp._io import atomic_write_text
    from bert_lrp.models.loading import load_model, resolve_model_dir
    from bert_lrp.errors import ArgumentParser

    parser = ArgumentParser(prog="layer_ablation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", metavar="DIR", help="sequence classifier folder (default checkpoints/minilm-sst2)")
    parser.add_argument("--data", required=True, metavar="FILE", help="labelled TSV with sentence and label columns")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    directory = resolve_model_dir(args.model)
    model, tokenizer = load_model(directory)
    layers = model.config.num_hidden_layers
    rows = []
    for skip in [[]] + [[k] for k in range(1, layers + 1)]:
        started = time.time()
        row = accuracy(model, tokenizer, args.data, skip=skip, batch_size=args.batch_size)
        row["seconds"] = round(time.time() - started, 1)
        rows.append(row)
        print(f"skip {skip or 'none'}: accuracy {row['accuracy']:.4f} ({row['seconds']} s)", file=sys.stderr)
    table = markdown(rows, layers)
    print(table)
    if args.json:
        payload = {"model": str(directory), "data": args.data, "rows": rows,
                   "torch": torch.__version__, "threads": torch.get_num_threads()}
        atomic_write_text(args.json, json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("layer_ablation.py", main, sys.argv[1:]))
