"""The explorer's overhead: ``POST /api/explain`` on a running explorer against the same request
made in-process, for one sentence.

The explorer runs as ``bert-lrp serve`` runs it (its uvicorn server; the Starlette app with its
Host/Origin/Content-Type checks, bodies read in pieces and parsed strictly, each explain watching
its client's connection to cancel; the models loaded on the explorer's model thread), in this
process on 127.0.0.1, so that both sides use the same model in memory and the same thread: the
comparison measures what the server adds (HTTP, JSON, checks, the rendered views, the hops
between threads), not two processes evicting each other's weights from the cache. In-process
baselines, with the same methods and target: ``explain_texts`` with the API's request (the road
the server calls, per-layer scores included, as the page draws them) and ``explain()`` on the
tokenised sentence (the core, no road). Rounds alternate the order; medians and median per-round
(paired) ratios.

    python benchmarks/bench_serve_overhead.py --out benchmarks/results
    python benchmarks/bench_serve_overhead.py --quick --out /tmp/bench   # 21 rounds: a check, not a figure
"""
from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import torch
from alternating import alternating_times  # benchmarks/alternating.py, beside this script

from bert_lrp import explain, explain_texts
from bert_lrp.attribution.road import Request
from bert_lrp.models.loading import DEFAULT_MODEL, resolve_model_dir
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer
from bert_lrp.views.explorer.server import explorer_server

SENTENCE = "a gripping , beautifully acted film that never lets go , even when its plot turns a little too neat ."
REQUESTS = {"lrp, gi, gs (the page's default)": ["lrp", "gradient_x_input", "gradient"], "lrp": ["lrp"]}


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served on a free port of 127.0.0.1 in a thread, by the server ``bert-lrp serve`` runs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    server = explorer_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=101)
    parser.add_argument("--quick", action="store_true", help="21 rounds (a check that the ratio holds)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.quick:
        args.rounds = 21
    torch.set_num_threads(args.threads)
    folder = resolve_model_dir(args.model)
    explorer = Explorer.load([folder])
    entry = explorer.models[folder.name]
    model, tokenizer, on_worker = entry.model, entry.tokenizer, explorer.on_worker
    rows = []
    with serving(create_app(explorer)) as address:
        with httpx.Client(base_url=address, timeout=300) as client:
            for title, methods in REQUESTS.items():
                request = Request(methods=methods, layers=True)
                batch = tokenizer([SENTENCE])
                entries = {
                    "explain() in-process": lambda: on_worker(lambda: explain(model, batch, methods, layers=True)),
                    "explain_texts() in-process": lambda: on_worker(
                        lambda: explain_texts(model, tokenizer, [SENTENCE], request)),
                    "POST /api/explain": lambda: client.post("/api/explain", json={"text": SENTENCE,
                                                                                  "methods": methods}).raise_for_status(),
                }
                times = alternating_times(entries, args.rounds, warmup=5)
                api = times["POST /api/explain"]
                row = {"request": title, "methods": methods, "median_ms": {n: 1000 * statistics.median(v)
                                                                          for n, v in times.items()}}
                for name in ("explain() in-process", "explain_texts() in-process"):
                    row[f"api / {name}"] = statistics.median(api) / statistics.median(times[name])
                    row[f"api / {name}, paired"] = statistics.median(a / b for a, b in zip(api, times[name]))
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_serve_overhead.json").write_text(json.dumps(
        {"model": folder.name, "sentence": SENTENCE, "threads": args.threads, "rounds": args.rounds, "rows": rows},
        indent=1) + "\n")
    lines = [f"`POST /api/explain` on `bert-lrp serve` vs the same request in-process, {folder.name}, one sentence "
             f"({len(tokenizer([SENTENCE]).tokens[0])} tokens), {args.threads} threads, median of {args.rounds} "
             "alternating rounds (paired ratio in brackets). Target: API within 1.2x.", "",
             "| methods | explain() ms | explain_texts() ms | API ms | API / explain() | API / explain_texts() |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        ms = row["median_ms"]
        lines.append(f"| {row['request']} | {ms['explain() in-process']:.1f} | {ms['explain_texts() in-process']:.1f} | "
                     f"{ms['POST /api/explain']:.1f} | {row['api / explain() in-process']:.3f} "
                     f"({row['api / explain() in-process, paired']:.3f}) | "
                     f"{row['api / explain_texts() in-process']:.3f} ({row['api / explain_texts() in-process, paired']:.3f}) |")
    (out / "bench_serve_overhead.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
