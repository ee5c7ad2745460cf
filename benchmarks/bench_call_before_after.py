"""Time one ``explain()`` call and one ``explain_texts()`` call with this checkout and with an earlier
commit, side by side: two worker processes (one per checkout, ``PYTHONPATH`` pointing at it) load the
same model and inputs; the parent asks them in turn, alternating which goes first, for one timed
call each. Medians over rounds, and the median of the per-round ratios now / before (the machine is
shared: each round times both).

    python benchmarks/bench_call_before_after.py --before db43c3b --out benchmarks/results

Writes ``call_before_after.json`` and ``call_before_after.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from earlier_commit import ROOT, checked_out, head_commit, write_report  # benchmarks/, beside this script
# (label, batch, length, what): "explain" times explain(model, batch, methods); "texts" times
# explain_texts(model, tokenizer, texts, methods=...) on the batch's texts (the road around it)
JOBS = [("lrp 1x32", 1, 32, "explain", "lrp"), ("lrp 1x128", 1, 128, "explain", "lrp"),
        ("lrp 8x128", 8, 128, "explain", "lrp"), ("gs+gi+lrp 8x128", 8, 128, "explain", "gradient,gi,lrp"),
        ("explain_texts lrp 1x32", 1, 32, "texts", "lrp"), ("explain_texts gs+gi+lrp 8x32", 8, 32, "texts",
                                                             "gradient,gi,lrp")]

WORKER = r'''
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
from bert_lrp import BertForSequenceClassification, BertTokenizer, explain, explain_texts
model = BertForSequenceClassification.from_pretrained(sys.argv[1]).float().eval()
tokenizer = BertTokenizer.from_pretrained(sys.argv[1])
words = ("a gripping , beautifully acted film that never lets go of its audience and the dull , lifeless "
         "mess of a plot hardly matters .").split()
def texts(batch, length):
    return [" ".join((words * 20)[k:k + length - 2]) for k in range(batch)]
print("ready", flush=True)
for line in sys.stdin:
    batch, length, what, methods = line.split()
    items = texts(int(batch), int(length))
    methods = methods.split(",")
    if what == "explain":
        encoded = tokenizer(items, truncation=True, max_length=int(length))
        run = lambda: explain(model, encoded, methods)
    else:
        run = lambda: explain_texts(model, tokenizer, items, methods=methods)
    run()  # warm
    started = time.perf_counter()
    run()
    print(json.dumps(time.perf_counter() - started), flush=True)
'''


def start(root: Path, model: Path, threads: int, script: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=str(threads))
    worker = subprocess.Popen([sys.executable, str(script), str(model), str(threads)], cwd=root, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if worker.stdout.readline().strip() != "ready":
        raise SystemExit(f"the worker of {root} did not start")
    return worker


def ask(worker: subprocess.Popen, batch: int, length: int, what: str, methods: str) -> float:
    worker.stdin.write(f"{batch} {length} {what} {methods}\n")
    worker.stdin.flush()
    return float(worker.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--model", type=Path, default=ROOT / "checkpoints" / "minilm-sst2")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with checked_out(args.before) as (before, scratch):
        script = scratch / "worker.py"
        script.write_text(WORKER, encoding="utf-8")
        workers = {"before": start(before, args.model.resolve(), args.threads, script),
                   "now": start(ROOT, args.model.resolve(), args.threads, script)}
        times = {(name, job[0]): [] for name in workers for job in JOBS}
        for k in range(args.rounds):
            for label, batch, length, what, methods in JOBS:
                order = list(workers.items()) if k % 2 == 0 else list(workers.items())[::-1]
                for name, worker in order:
                    times[(name, label)].append(ask(worker, batch, length, what, methods))
            print(f"round {k + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
    commit = head_commit()
    results = []
    for label, *_ in JOBS:
        b, n = times[("before", label)], times[("now", label)]
        results.append({"job": label, "before_ms": 1e3 * statistics.median(b), "now_ms": 1e3 * statistics.median(n),
                        "paired_ratio": statistics.median(x / y for x, y in zip(n, b)), "before": b, "now": n})
    report = {"before": args.before, "now": commit, "rounds": args.rounds, "threads": args.threads,
              "python": platform.python_version(), "jobs": results}
    lines = [f"One call, shipped MiniLM in float32, {args.threads} threads, median of {args.rounds} alternating "
             f"rounds: {args.before} (before) vs {commit} (now)", "",
             "| call | before (ms) | now (ms) | now / before (paired) |", "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['job']} | {r['before_ms']:.1f} | {r['now_ms']:.1f} | {r['paired_ratio']:.3f} |")
    write_report(args.out, "call_before_after", report, lines)


if __name__ == "__main__":
    main()
