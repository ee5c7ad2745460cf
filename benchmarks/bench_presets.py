"""Cost of each LRP preset relative to a plain forward+backward of the same model.

For every cell (batch x length) the entries are timed round-robin in one process: the reference
(our plain fast path, gradient of the target logit w.r.t. the word embeddings, the floor of any
one-backward method) and ``explain(methods=["lrp"], rule=preset)`` for each preset, and for the
model's tuned composite (``rule="tuned"``, its ``lrp_composite.json``) when it has one. Reports the
median time of each and median / median-reference ratios; writes JSON and a markdown table.

    python benchmarks/bench_presets.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from bert_lrp import BertForSequenceClassification, BertTokenizer, explain
from bert_lrp.evaluation.benchmark import reference_step

REPO = Path(__file__).resolve().parents[1]
PRESETS = ("attnlrp", "cp-lrp", "bert-lrp")


def _inputs(tokenizer, text: str, batch: int, length: int) -> dict:
    ids = tokenizer([text], truncation=True, max_length=512)["input_ids"][0].tolist()
    ids = (ids[:-1] * (length // max(1, len(ids) - 1) + 1))[: length - 1] + ids[-1:]
    input_ids = torch.tensor([ids] * batch)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "token_type_ids": torch.zeros_like(input_ids)}


def _time(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def run(model, tokenizer, text, batches, lengths, repeats, presets=PRESETS) -> list:
    rows = []
    for batch in batches:
        for length in lengths:
            inputs = _inputs(tokenizer, text, batch, length)
            target = torch.zeros(batch, dtype=torch.long)
            entries = {"reference": lambda: reference_step(model, inputs, target)}
            for preset in presets:
                entries[preset] = lambda preset=preset: explain(model, inputs, methods=["lrp"], rule=preset,
                                                                target=target.tolist())
            for function in entries.values():  # warm-up
                function()
            times = {name: [] for name in entries}
            for _ in range(repeats):
                for name, function in entries.items():
                    times[name].append(_time(function))
            medians = {name: statistics.median(values) for name, values in times.items()}
            rows.append({"batch": batch, "length": length, "median_s": medians,
                         "ratio": {p: medians[p] / medians["reference"] for p in presets}})
            print(batch, length, {p: round(r, 3) for p, r in rows[-1]["ratio"].items()}, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "minilm-sst2"))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--lengths", default="32,128")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="folder for bench_presets.json / .md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = BertForSequenceClassification.from_pretrained(args.model).float().eval()
    tokenizer = BertTokenizer.from_pretrained(args.model)
    text = (REPO / "tests" / "fixtures" / "sst2" / "dev_sample.tsv").read_text(encoding="utf-8")
    text = " ".join(line.split("\t")[0] for line in text.splitlines()[1:40])
    presets = PRESETS + (("tuned",) if getattr(model, "tuned_composite", None) is not None else ())
    rows = run(model, tokenizer, text, [int(b) for b in args.batches.split(",")],
               [int(n) for n in args.lengths.split(",")], args.repeats, presets)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "model": Path(args.model).name, "repeats": args.repeats,
            "tuned": model.tuned_composite.composite.to_dict() if "tuned" in presets else None}
    (out / "bench_presets.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    lines = [f"LRP preset / reference (plain forward+backward to the input embeddings), median of {args.repeats} "
             f"alternating runs, {args.threads} threads, `{Path(args.model).name}`, torch {torch.__version__}", "",
             "| batch x length | reference (ms) | " + " | ".join(presets) + " |", "|---|---:|" + "---:|" * len(presets)]
    for row in rows:
        lines.append(f"| {row['batch']} x {row['length']} | {row['median_s']['reference'] * 1e3:.0f} | "
                     + " | ".join(f"{row['ratio'][p]:.2f}" for p in presets) + " |")
    (out / "bench_presets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
