"""Time ``bert-lrp explain --jsonl`` over a data set with this checkout and with an earlier commit,
alternating in one run (the machine is shared: medians over rounds, each round runs both).

    python benchmarks/bench_before_after.py --before e5a72da --data ../shared/data/sst2/dev.tsv \
        --out benchmarks/results

The earlier commit is checked out with ``git worktree`` into a temporary folder and run with
``PYTHONPATH`` pointing at it; both read the same model (``--model``, default the shipped
``checkpoints/minilm-sst2``) and the same sentences (the ``sentence`` column of a TSV, or one
per line). Writes ``before_after.json`` and ``before_after.md``: median seconds per run and the
median of the per-round ratios now / before.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from earlier_commit import ROOT, checked_out, head_commit, write_report  # benchmarks/, beside this script
JOBS = {"lrp": "lrp", "lrp,gi,gs,lat,rollout": "lrp,gi,gs,lat,rollout"}


def sentences(path: Path) -> list:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and lines[0].split("\t")[0] == "sentence":
        lines = [line.split("\t")[0] for line in lines[1:]]
    return lines


def run_once(root: Path, model: Path, text_file: Path, methods: str, out: Path, threads: int) -> float:
    for stale in (out, Path(str(out) + ".run.json")):
        stale.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=str(threads))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bert_lrp", "explain", "--model", str(model), "--file", str(text_file),
                    "--methods", methods, "--jsonl", str(out), "--quiet"], cwd=root, env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--model", type=Path, default=ROOT / "checkpoints" / "minilm-sst2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", default="before_after", help="file names of the report (NAME.json, NAME.md)")
    args = parser.parse_args()
    with checked_out(args.before) as (before, scratch):
        text_file = scratch / "sentences.txt"
        rows = sentences(args.data)
        text_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
        roots = {"before": before, "now": ROOT}
        times = {(r, j): [] for r in roots for j in JOBS}
        for k in range(args.rounds):
            for job, methods in JOBS.items():
                order = list(roots.items()) if k % 2 == 0 else list(roots.items())[::-1]
                for name, root in order:
                    seconds = run_once(root, args.model.resolve(), text_file, methods, scratch / f"{name}.jsonl",
                                       args.threads)
                    times[(name, job)].append(seconds)
                    print(f"round {k + 1}: {name} {job} {seconds:.2f} s", file=sys.stderr, flush=True)
    commit = head_commit()
    results = []
    for job in JOBS:
        b, n = times[("before", job)], times[("now", job)]
        results.append({"methods": job, "before_s": statistics.median(b), "now_s": statistics.median(n),
                        "paired_ratio": statistics.median(x / y for x, y in zip(n, b)), "before": b, "now": n})
    report = {"before": args.before, "now": commit, "data": args.data.name, "sentences": len(rows),
              "rounds": args.rounds, "threads": args.threads, "python": platform.python_version(), "jobs": results}
    lines = [f"`bert-lrp explain --jsonl` on {len(rows)} sentences of {args.data.name}, {args.threads} threads, "
             f"median of {args.rounds} alternating rounds: {args.before} (before) vs {commit} (now)", "",
             "| methods | before (s) | now (s) | now / before (paired) |", "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['methods']} | {r['before_s']:.2f} | {r['now_s']:.2f} | {r['paired_ratio']:.3f} |")
    write_report(args.out, args.name, report, lines)


if __name__ == "__main__":
    main()
