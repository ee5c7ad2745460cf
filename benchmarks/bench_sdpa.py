#!/usr/bin/env python
"""Attention implementations side by side: our BertForSequenceClassification with
``attn_implementation="sdpa"`` (PyTorch's fused attention) and ``"eager"`` (the explicit softmax),
and transformers' BertForSequenceClassification with ``"sdpa"``, all holding the same random
weights (a MiniLM-sized model: 6 layers, hidden 384, 12 heads), fp32, CPU, a fixed thread count.

For each shape (batch x sequence length, a quarter of each batch padded):
  * inference: ``model(**inputs)`` under ``torch.no_grad()`` in eval mode;
  * fine-tuning step: forward with labels and ``loss.backward()`` in train mode (dropout on).
Each run times the three back to back, rotating which goes first, so load from other processes
hits all alike. Reports the median and IQR per cell and the ratios of medians, and the machine's
load averages (``uptime``'s 1/5/15-minute numbers) before and after the runs.

Writes ``benchmarks/results/bench_sdpa.json`` and ``bench_sdpa.md``.

    python benchmarks/bench_sdpa.py [--runs 11] [--warmup 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's bert_lrp, not an installed one
SHAPES = ((8, 128), (32, 64))
SIZES = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
             intermediate_size=1536, num_labels=2)


def build(seed: int = 0):
    """{name: model} holding the same weights: ours (sdpa, eager) and transformers' (sdpa)."""
    import transformers

    import bert_lrp

    torch.manual_seed(seed)
    theirs = transformers.BertForSequenceClassification(
        transformers.BertConfig(**SIZES, attn_implementation="sdpa"))
    ours_sdpa = bert_lrp.from_transformers(theirs)  # the same Parameters
    ours_eager = bert_lrp.BertForSequenceClassification._from_config(theirs.config, attn_implementation="eager")
    ours_eager.load_state_dict(ours_sdpa.state_dict())
    return {"ours sdpa": ours_sdpa, "ours eager": ours_eager, "transformers sdpa": theirs}


def inputs_of(batch: int, seq: int):
    generator = torch.Generator().manual_seed(batch * 1000 + seq)
    ids = torch.randint(1000, 30000, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[: max(1, batch // 4), seq // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def time_once(model, inputs, labels, mode: str) -> float:
    start = time.perf_counter()
    if mode == "inference":
        with torch.no_grad():
            model(**inputs)
    else:
        model.zero_grad(set_to_none=True)
        model(**inputs, labels=labels).loss.backward()
    return time.perf_counter() - start


def quartiles(values):
    q = statistics.quantiles(values, n=4)
    return statistics.median(values), q[2] - q[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    models = build()
    names = list(models)
    rows = []
    for batch, seq in SHAPES:
        inputs = inputs_of(batch, seq)
        labels = torch.randint(0, 2, (batch,), generator=torch.Generator().manual_seed(1))
        for mode in ("inference", "fine-tuning step"):
            for model in models.values():
                model.train(mode != "inference")
            times = {name: [] for name in names}
            for run in range(args.warmup + args.runs):
                order = names[run % 3:] + names[:run % 3]
                for name in order:
                    elapsed = time_once(models[name], inputs, labels, mode)
                    if run >= args.warmup:
                        times[name].append(elapsed)
            cells = {name: quartiles(times[name]) for name in names}
            rows.append({"shape": f"{batch}x{seq}", "mode": mode,
                         **{name: {"median_ms": 1000 * m, "iqr_ms": 1000 * q} for name, (m, q) in cells.items()},
                         "ours sdpa / transformers sdpa": cells["ours sdpa"][0] / cells["transformers sdpa"][0],
                         "ours eager / ours sdpa": cells["ours eager"][0] / cells["ours sdpa"][0]})
            print(rows[-1]["shape"], mode, {n: round(1000 * cells[n][0], 1) for n in names}, flush=True)
    import transformers

    load_after = os.getloadavg()
    meta = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": args.threads,
            "runs": args.runs, "warmup": args.warmup, "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "model": SIZES, "load_average_before": load_before,
            "load_average_after": load_after}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_sdpa.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Attention implementations: ours (sdpa, eager) vs transformers' sdpa", "",
             f"MiniLM-sized random BERT (6 layers, hidden 384, 12 heads), fp32, CPU, {args.threads} threads, "
             f"median (IQR) of {args.runs} runs in ms; torch {torch.__version__}, transformers "
             f"{transformers.__version__}. Written by `benchmarks/bench_sdpa.py`.", "",
             f"Machine load (`uptime`'s 1/5/15-minute load averages, {os.cpu_count()} CPUs): "
             f"{' / '.join(f'{v:.2f}' for v in load_before)} before, "
             f"{' / '.join(f'{v:.2f}' for v in load_after)} after the runs.", "",
             "| shape | mode | ours sdpa | ours eager | transformers sdpa | ours sdpa / transformers sdpa | "
             "eager / sdpa (ours) |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = " | ".join(f"{row[n]['median_ms']:.1f} ({row[n]['iqr_ms']:.1f})" for n in names)
        lines.append(f"| {row['shape']} | {row['mode']} | {cells} | {row['ours sdpa / transformers sdpa']:.2f} | "
                     f"{row['ours eager / ours sdpa']:.2f} |")
    (out / "bench_sdpa.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
