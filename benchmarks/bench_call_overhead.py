"""Per-call cost of ``explain(lrp)`` against our plain input-gradient pass, split into where it goes:
the same forward+backward through the rule path with the gradient composite (what the rule
machinery itself costs) and with AttnLRP without building the Explanation (what the rules cost).
Alternating rounds in one process; median ratios and median per-round (paired) ratios.

    python benchmarks/bench_call_overhead.py --out benchmarks/results      # 1x32, 1x128, 8x128
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from alternating import alternating_times  # benchmarks/alternating.py, beside this script

from bert_lrp.attribution.explain import explain, frozen_parameters
from bert_lrp.evaluation import benchmark
from bert_lrp.rules.composites import ATTNLRP, GRADIENT, RuleSet


def _rule_pass(model, inputs, target, composite):
    """Forward + backward to the word embeddings under ``composite``'s rules, nothing else."""
    encoder = model.base_model

    def run():
        with frozen_parameters(model):
            rules = RuleSet.of([composite])
            word, position, token_type = encoder.embedding_parts(inputs["input_ids"], inputs["token_type_ids"])
            word = word.detach().requires_grad_(True)
            embedded = encoder.combine_embeddings(word, position, token_type, rules)
            logits = model(attention_mask=inputs["attention_mask"], embedding_output=embedded, rules=rules).logits
            torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), word)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="1x32,1x128,8x128", help="batch x length, comma-separated")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = benchmark.default_model_dir()
    model, _, _ = benchmark.load_models(model_dir, False)
    windows = benchmark.TextWindows(model_dir, benchmark.read_text(None))
    rows = []
    for shape in args.shapes.split(","):
        batch, length = (int(v) for v in shape.split("x"))
        inputs = windows.batch(length, batch)
        target = benchmark.predicted_target(model, inputs)
        entries = {"reference": lambda: benchmark.reference_step(model, inputs, target),
                   "rule path, gradient composite": _rule_pass(model, inputs, target, GRADIENT),
                   "rule path, attnlrp": _rule_pass(model, inputs, target, ATTNLRP),
                   "explain(lrp)": lambda: explain(model, inputs, ["lrp"], target=target, rule="attnlrp")}
        times = alternating_times(entries, args.rounds, warmup=3)
        reference = statistics.median(times["reference"])
        rows.append({"batch": batch, "length": length, "reference_ms": 1000 * reference, "entries": {
            name: {"median_ms": 1000 * statistics.median(values), "ratio": statistics.median(values) / reference,
                   "paired_ratio": statistics.median(v / r for v, r in zip(values, times["reference"]))}
            for name, values in times.items() if name != "reference"}})
        print(shape, {k: round(v["paired_ratio"], 3) for k, v in rows[-1]["entries"].items()}, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_call_overhead.json").write_text(json.dumps({"threads": args.threads, "rounds": args.rounds,
                                                              "rows": rows}, indent=1) + "\n")
    names = list(rows[0]["entries"])
    lines = [f"Per call / our plain input-gradient pass, 2 threads, median of {args.rounds} alternating rounds "
             "(paired ratio in brackets)", "", "| batch x length | reference (ms) | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for row in rows:
        cells = [f"{row['entries'][n]['ratio']:.3f} ({row['entries'][n]['paired_ratio']:.3f})" for n in names]
        lines.append(f"| {row['batch']} x {row['length']} | {row['reference_ms']:.1f} | " + " | ".join(cells) + " |")
    (out / "bench_call_overhead.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
