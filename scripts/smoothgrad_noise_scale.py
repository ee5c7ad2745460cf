"""Measure SmoothGrad's noise scale: how often noisy copies change the prediction, how much two
seeds agree, and how much the noise changes the map, for several noise scales.

    python scripts/smoothgrad_noise_scale.py                     # the shipped model, 200 SST-2 sentences
    python scripts/smoothgrad_noise_scale.py --limit 20 --scales 0.5,1   # a quick look
    python scripts/smoothgrad_noise_scale.py --from-json   # the table again from the JSON

Per sentence (target: the clean prediction), for each candidate scale:

* the noise of ``bert_lrp.attribution.smoothgrad`` (``smoothgrad_noise``: per real token,
  standard deviation ``smoothgrad_sigma x std`` of the sentence's embedding-output values over its
  real tokens); ``old`` is the former default, 0.15 x (max - min) of those values, run as
  ``smoothgrad_sigma = 0.15 x range / std`` per sentence (the same draws, the old scale);
* flipped copies: the fraction of the noisy copies (seed 0) whose predicted class differs from
  the clean prediction, over all sentences and over the confident ones (clean probability >= 0.9);
  mean |change of the target logit| over the copies;
* seed agreement: Pearson correlation of the token scores of seed 0 and seed 1, per sentence,
  over the word pieces ([CLS]/[SEP] left out; sentences with fewer than 3 pieces skipped),
  averaged over sentences, for SG(GS) (L2 norm) and SG(GI) (sum), as the registered methods
  ``smoothgrad`` and ``smoothgrad_x_input`` compute them (``smoothgrad()`` returns both);
* noise visible: correlation of the seed-0 map with the noise-free map (GS, GI; 1.0 = the noise
  changes nothing) and the noise vector's norm over the mean token norm.

Writes ``<out>.json`` (settings, per-candidate means, per-sentence values) and ``<out>.md`` (the table).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from bert_lrp.attribution.smoothgrad import DEFAULT_SIGMA, noise_scale, smoothgrad, smoothgrad_noise
from bert_lrp.models.loading import load_model

CONFIDENT = 0.9  # clean probability of the predicted class at or above which a sentence counts as confident
OLD_RANGE_FRACTION = 0.15  # the former default: sigma = 0.15 x (max - min) of the embedding output


def pearson(a: torch.Tensor, b: torch.Tensor) -> Optional[float]:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = float(a.norm() * b.norm())
    return None if denominator == 0.0 else float((a * b).sum()) / denominator


def mean(values: List[Optional[float]]) -> Optional[float]:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def read_sentences(path: Path, limit: Optional[int]) -> List[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [row["sentence"].strip() for row in csv.DictReader(handle, delimiter="\t")]
    return rows[:limit] if limit else rows


def measure_sentence(model, tokenizer, sentence: str, candidates: List[str], samples: int,
                     seeds: List[int]) -> Dict[str, dict]:
    encoding = tokenizer([sentence])
    inputs = {k: encoding[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    pieces = torch.tensor([w is not None for w in encoding.word_ids[0]])
    with torch.no_grad():
        embedded = model.base_model.embed(ids, inputs["token_type_ids"])
        clean = model(attention_mask=mask, embedding_output=embedded).logits[0]
    label = int(clean.argmax())
    labels = torch.tensor([label])
    real = embedded[0][mask[0].bool()].double()
    std = float(noise_scale(embedded, mask)[0])
    value_range = float(real.max() - real.min())
    token_norm = float(real.norm(dim=-1).mean())
    unit_std = float(real.std(0, correction=0).mean())  # per hidden unit over the tokens, averaged over units
    gradient, product = smoothgrad(model, inputs, labels, None, samples=1, sigma=0.0, seed=0)
    reference = {"gs": gradient[0].norm(dim=-1)[pieces], "gi": product[0].sum(-1)[pieces]}
    probability = float(clean.softmax(-1)[label])
    out = {"_sentence": {"tokens": int(mask.sum()), "pieces": int(pieces.sum()), "probability": probability,
                         "std": std, "range": value_range,
                         "token_norm": token_norm, "unit_std_mean": unit_std}}
    for candidate in candidates:
        sigma = OLD_RANGE_FRACTION * value_range / std if candidate == "old" else float(candidate)
        noise = smoothgrad_noise(embedded, mask, ids, samples, sigma, seeds[0])[0]  # [samples, seq, hidden]
        with torch.no_grad():
            noisy = model(attention_mask=mask.expand(samples, -1), embedding_output=embedded + noise).logits
        maps = {}
        for seed in seeds:
            gradient, product = smoothgrad(model, inputs, labels, None, samples=samples, sigma=sigma, seed=seed)
            maps[seed] = {"gs": gradient[0].norm(dim=-1)[pieces], "gi": product[0].sum(-1)[pieces]}
        enough = int(pieces.sum()) >= 3
        first, second = maps[seeds[0]], maps[seeds[1]]
        out[candidate] = {
            "sigma_over_std": sigma,
            "noise_norm_over_token_norm": sigma * std * math.sqrt(embedded.shape[-1]) / token_norm,
            "flipped": float((noisy.argmax(-1) != label).double().mean()),
            "logit_change": float((noisy[:, label] - clean[label]).abs().mean()),
            "seed_agreement_gs": pearson(first["gs"], second["gs"]) if enough else None,
            "seed_agreement_gi": pearson(first["gi"], second["gi"]) if enough else None,
            "with_noise_free_gs": pearson(first["gs"], reference["gs"]) if enough else None,
            "with_noise_free_gi": pearson(first["gi"], reference["gi"]) if enough else None,
        }
    return out


KEYS = ("sigma_over_std", "noise_norm_over_token_norm", "flipped", "logit_change", "seed_agreement_gs",
        "seed_agreement_gi", "with_noise_free_gs", "with_noise_free_gi")


def markdown(summary: dict) -> str:
    s = summary["settings"]
    lines = [
        "# SmoothGrad noise scale",
        "",
        f"Model `{s['model']}`, {s['sentences']} sentences of `{s['data']}`, {s['samples']} noisy copies, seeds "
        f"{s['seeds'][0]} and {s['seeds'][1]}, target = the clean prediction; torch {s['torch']}, "
        f"{s['threads']} threads, {s['seconds']:.0f} s.",
        "",
        "Noise sd = smoothgrad_sigma x std of the sentence's embedding-output values over its real tokens; "
        f"`old` = the former default {OLD_RANGE_FRACTION} x (max - min) of those values (column 2: what that is in "
        "std units, mean over sentences). Flipped: noisy copies (seed 0) predicting another class. "
        f"Flipped, confident: the same over the {s['confident_sentences']} sentences predicted with probability >= "
        f"{CONFIDENT}. Seed agreement: "
        "mean per-sentence Pearson correlation of the two seeds' token scores over the word pieces "
        f"({s['correlated_sentences']} sentences with >= 3 pieces). vs noise-free: correlation of the seed-0 map "
        "with GS / GI (1.00 = the noise changes nothing).",
        "",
        "| smoothgrad_sigma | noise sd / std | noise norm / token norm | flipped copies | flipped, confident "
        "| sentences with a flip | mean abs logit change | seed agreement SG(GS) | seed agreement SG(GI) "
        "| SG(GS) vs GS | SG(GI) vs GI |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for candidate, row in summary["candidates"].items():
        name = f"old ({OLD_RANGE_FRACTION} x range)" if candidate == "old" else candidate
        if candidate != "old" and float(candidate) == DEFAULT_SIGMA:
            name = f"**{name} (default)**"
        cells = [f"{row['sigma_over_std']:.2f}", f"{row['noise_norm_over_token_norm']:.2f}",
                 f"{100 * row['flipped']:.1f} %", f"{100 * row['flipped_confident']:.1f} %",
                 f"{row['sentences_with_a_flip']} / {s['sentences']}",
                 f"{row['logit_change']:.3f}"]
        cells += [f"{row[k]:.3f}" for k in ("seed_agreement_gs", "seed_agreement_gi", "with_noise_free_gs",
                                            "with_noise_free_gi")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    e = summary["embedding_output"]
    lines += ["", f"Embedding output over the sentences (means): std {e['std']:.3f}, range {e['range']:.2f}, "
              f"token norm {e['token_norm']:.2f}, std of each hidden unit over the tokens {e['unit_std_mean']:.3f} "
              "(averaged over units).", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", default="checkpoints/minilm-sst2")
    parser.add_argument("--data", default="tests/fixtures/sst2/dev_sample.tsv", help="TSV with a 'sentence' column")
    parser.add_argument("--scales", default="0.1,0.25,0.4,0.5,0.75,1",
                        help="candidate smoothgrad_sigma values (multiples of the std); 'old' is always added")
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--seeds", default="0,1", help="two seeds")
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    parser.add_argument("--out", default="benchmarks/results/smoothgrad_noise_scale", help="output path without suffix")
    parser.add_argument("--from-json", action="store_true",
                        help="run nothing: write <out>.md again from <out>.json (e.g. after DEFAULT_SIGMA changed)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.from_json:
        table = markdown(json.loads(out.with_suffix(".json").read_text(encoding="utf-8")))
        out.with_suffix(".md").write_text(table, encoding="utf-8")
        print(table, end="")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) != 2:
        parser.error("--seeds: give two seeds")
    candidates = [s.strip() for s in args.scales.split(",") if s.strip()]
    for candidate in candidates:
        try:
            if float(candidate) < 0:
                raise ValueError
        except ValueError:
            parser.error(f"--scales: {candidate!r} is not a non-negative number")
    candidates.append("old")
    model, tokenizer = load_model(args.model)
    model.eval()
    sentences = read_sentences(Path(args.data), args.limit)
    start = time.perf_counter()
    per_sentence = []
    for index, sentence in enumerate(sentences):
        per_sentence.append(measure_sentence(model, tokenizer, sentence, candidates, args.samples, seeds))
        if (index + 1) % 10 == 0:
            print(f"{index + 1}/{len(sentences)} sentences, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    summary = {
        "settings": {"model": args.model, "data": args.data, "sentences": len(sentences), "samples": args.samples,
                     "seeds": seeds, "default_sigma": DEFAULT_SIGMA, "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "machine": platform.machine(),
                     "seconds": time.perf_counter() - start,
                     "correlated_sentences": sum(1 for r in per_sentence if r["_sentence"]["pieces"] >= 3),
                     "command": "python scripts/smoothgrad_noise_scale.py " + " ".join(argv if argv is not None
                                                                                      else sys.argv[1:])},
        "embedding_output": {k: mean([r["_sentence"][k] for r in per_sentence])
                             for k in ("std", "range", "token_norm", "unit_std_mean")},
        "candidates": {c: {k: mean([r[c][k] for r in per_sentence]) for k in KEYS} for c in candidates},
    }
    confident = [r for r in per_sentence if r["_sentence"]["probability"] >= CONFIDENT]
    summary["settings"]["confident_sentences"] = len(confident)
    for c in candidates:
        flips = [r[c]["flipped"] for r in per_sentence]
        summary["candidates"][c]["sentences_with_a_flip"] = sum(1 for f in flips if f > 0)
        summary["candidates"][c]["max_flipped"] = max(flips)
        summary["candidates"][c]["flipped_confident"] = mean([r[c]["flipped"] for r in confident])
    summary["sentences"] = [{"sentence": sentence, **r["_sentence"], "candidates": {c: r[c] for c in candidates}}
                            for sentence, r in zip(sentences, per_sentence)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    table = markdown(summary)
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
