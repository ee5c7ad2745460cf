"""Conservation of each LRP preset: sum of the input relevance / explained logit.

On the shipped model and on the same model with every bias set to 0 (where a conservative rule
set must give exactly 1), over the first N sentences of an SST-2 TSV (default: the 200-sentence
sample in tests/fixtures). Prints a markdown table and writes it to --out.

    python benchmarks/conservation.py --out benchmarks/results/conservation.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bert_lrp import BertForSequenceClassification, BertTokenizer, explain

REPO = Path(__file__).resolve().parents[1]


def conservation_table(model_dir: Path, sentences: list, presets=("attnlrp", "cp-lrp", "bert-lrp")) -> str:
    model = BertForSequenceClassification.from_pretrained(model_dir).float().eval()
    batch = BertTokenizer.from_pretrained(model_dir)(sentences)
    rows = ["| preset | shipped model: min / median / max | all biases 0: min / median / max |", "|---|---|---|"]
    results = {}
    for variant in ("shipped", "bias-free"):
        if variant == "bias-free":
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    if name.endswith("bias"):
                        parameter.zero_()
        for preset in presets:
            ratio = explain(model, batch, methods=["lrp"], rule=preset).conservation["lrp"]
            results[preset, variant] = f"{ratio.min():.3f} / {ratio.median():.3f} / {ratio.max():.3f}"
    rows += [f"| {p} | {results[p, 'shipped']} | {results[p, 'bias-free']} |" for p in presets]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "minilm-sst2"), help="classifier folder")
    parser.add_argument("--data", default=str(REPO / "tests" / "fixtures" / "sst2" / "dev_sample.tsv"),
                        help="TSV with a header and the sentence in the first column")
    parser.add_argument("--limit", type=int, default=20, help="number of sentences")
    parser.add_argument("--out", help="write the markdown table here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lines = Path(args.data).read_text(encoding="utf-8").splitlines()[1: args.limit + 1]
    table = conservation_table(Path(args.model), [line.split("\t")[0] for line in lines])
    print(table)
    if args.out:
        Path(args.out).write_text(f"Conservation (sum of relevance / explained logit), {args.limit} sentences of "
                                  f"{Path(args.data).name}, `python benchmarks/conservation.py`\n\n{table}")


if __name__ == "__main__":
    main()
