"""GS+GI+LRP in one call: stacked copies (one forward + one backward) vs one pass per composite,
against LRP alone, per batch x length; median of alternating rounds in one process.

    python benchmarks/bench_schedule.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bert_lrp import BertForSequenceClassification, explain
from bert_lrp.attribution.explain import STACK_LIMIT, _stacking_pays
from bert_lrp.rules.composites import ATTNLRP, GRADIENT

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "minilm-sst2"),
                        help="classifier folder, or 'bert-base' for random BERT-base-sized weights")
    parser.add_argument("--shapes", default="1x128,8x128,8x256,4x512,8x512", help="batch x length, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "bert-base":
        from bert_lrp import BertConfig

        torch.manual_seed(0)
        model = BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                                         num_attention_heads=12, intermediate_size=3072)).eval()
    else:
        model = BertForSequenceClassification.from_pretrained(args.model).float().eval()
    rows = []
    for shape in args.shapes.split(","):
        batch, length = (int(v) for v in shape.split("x"))
        ids = torch.randint(1000, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        entries = {"lrp": lambda: explain(model, inputs, ["lrp"], target=0),
                   "stacked": lambda: explain(model, inputs, ["gs", "gi", "lrp"], target=0, schedule="stacked"),
                   "separate": lambda: explain(model, inputs, ["gs", "gi", "lrp"], target=0, schedule="separate")}
        for function in entries.values():
            function()
        times = {name: [] for name in entries}
        for _ in range(args.repeats):
            for name, function in entries.items():
                start = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - start)
        median = {name: statistics.median(values) for name, values in times.items()}
        rows.append({"batch": batch, "length": length, "median_s": median,
                     "stacked/lrp": median["stacked"] / median["lrp"], "separate/lrp": median["separate"] / median["lrp"],
                     "auto": "stacked" if _stacking_pays("auto", [GRADIENT, ATTNLRP], ids, model) else "separate"})
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_schedule.json").write_text(json.dumps({"threads": args.threads, "model": Path(args.model).name,
                                                         "repeats": args.repeats, "rows": rows}, indent=1))
    lines = [f"GS+GI+LRP / LRP alone, `{Path(args.model).name}`, {args.threads} threads, median of {args.repeats} "
             f"alternating rounds (auto: stacked while batch x length x hidden x layers <= {STACK_LIMIT:,})", "",
             "| batch x length | LRP (ms) | stacked / LRP | separate / LRP | auto picks |", "|---|---:|---:|---:|---|"]
    lines += [f"| {r['batch']} x {r['length']} | {r['median_s']['lrp'] * 1e3:.0f} | {r['stacked/lrp']:.2f} | "
              f"{r['separate/lrp']:.2f} | {r['auto']} |" for r in rows]
    (out / "bench_schedule.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
