#!/usr/bin/env python
"""Issue 3's benchmark grid and targets.

MiniLM (all-MiniLM-L6-v2 weights, seeded 2-class head), 2 threads, batch 1 and 8, sequence lengths
16/64/128/256 of SST-2 dev text, our lrp / gs / gi / gs+gi+lrp / lat / ig and the peers (captum
Saliency, InputXGradient, LayerIntegratedGradients with 50 steps, transformers forward+backward,
LXT AttnLRP). Then batch 8 x 512 tokens once per method of ours, for peak memory.

Targets checked (written to ``<out>/attribution_targets.{json,md}``):

1. lrp / reference <= 1.15 in every cell (reference: our plain forward+backward, input gradients),
2. gs+gi+lrp <= 1.5 x lrp alone in every cell,
3. lrp peak memory <= 1.2 x the reference's in every cell,
4. lrp >= 40x faster than captum LayerIntegratedGradients (n_steps=50) at batch 8 x 128,
5. lrp / LXT <= 1.0 in every cell (measured side by side in LXT's runner process),
6. batch 8 x 512 runs within memory for every method of ours.

Usage: ``python benchmarks/bench_attribution.py [--out benchmarks/results] [--repeats 5] [--skip-run]``
(``--skip-run`` re-evaluates the targets from existing JSON).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OURS = ("lrp", "gs", "gi", "gs+gi+lrp", "lat", "ig")


def run(out: Path, repeats: int, threads: int, ig_repeats: int = 2) -> None:
    from bert_lrp.cli.benchmark import main
    from bert_lrp.evaluation.benchmark import default_model_dir

    model = default_model_dir()
    common = ["--model", model, "--threads", str(threads), "--out", str(out)]
    main(common + ["--name", "attribution_grid", "--methods", ",".join(OURS), "--peers", "--batch-sizes", "1,8",
                   "--seq-lens", "16,64,128,256", "--repeats", str(repeats), "--ig-repeats", str(ig_repeats),
                   "--ig-max-tokens", "1024"])
    main(common + ["--name", "attribution_grid_512", "--methods", ",".join(OURS), "--batch-sizes", "8", "--seq-lens", "512",
                   "--memory-only", "--ig-max-tokens", "4096"])


def _cell(cells, method, batch, seq_len):
    for c in cells:
        if c["method"] == method and c["batch"] == batch and c["seq_len"] == seq_len:
            return c
    return None


def evaluate(out: Path) -> dict:
    grid = json.loads((out / "attribution_grid.json").read_text())
    cells = grid["cells"]
    keys = sorted({(c["batch"], c["seq_len"]) for c in cells})
    checks = []

    def add(name, target, value, passed, where):
        checks.append({"target": name, "limit": target, "value": value, "passed": passed, "cell": where})

    for batch, seq_len in keys:
        where = f"B={batch} L={seq_len}"
        lrp, ref = _cell(cells, "lrp", batch, seq_len), _cell(cells, "reference", batch, seq_len)
        combo = _cell(cells, "gs+gi+lrp", batch, seq_len)
        lxt = _cell(cells, "lxt", batch, seq_len)
        if lrp and ref:
            value = lrp["median_s"] / ref["median_s"]
            add("lrp / reference", "<= 1.15", value, value <= 1.15, where)
            if lrp.get("peak_rss_increase_bytes") is not None and (ref.get("peak_rss_increase_bytes") or 0) >= 2 ** 20:
                value = lrp["peak_rss_increase_bytes"] / ref["peak_rss_increase_bytes"]
                add("lrp peak memory / reference's", "<= 1.2", value, value <= 1.2,
                    f"{where} ({lrp['peak_rss_increase_bytes'] / 2**20:.0f} MB vs "
                    f"{ref['peak_rss_increase_bytes'] / 2**20:.0f} MB)")
        if lrp and combo:
            value = combo["median_s"] / lrp["median_s"]
            add("gs+gi+lrp / lrp", "<= 1.5", value, value <= 1.5, where)
        if lxt and lxt.get("ours_lrp_over_lxt") is not None:
            value = lxt["ours_lrp_over_lxt"]
            add("lrp / LXT (runner process)", "<= 1.0", value, value <= 1.0, where)
    lig, lrp = _cell(cells, "captum-lig", 8, 128), _cell(cells, "lrp", 8, 128)
    if lig and lrp:
        value = lig["median_s"] / lrp["median_s"]
        add("captum LayerIG(50) / lrp", ">= 40", value, value >= 40, "B=8 L=128")
    else:
        add("captum LayerIG(50) / lrp", ">= 40", None, False, "B=8 L=128 (not measured)")
    path512 = out / "attribution_grid_512.json"
    if path512.exists():
        big = json.loads(path512.read_text())
        for method in ("reference",) + OURS:
            c = _cell(big["cells"], method, 8, 512)
            peak = None if c is None else c.get("peak_rss_increase_bytes")
            add(f"{method} runs at B=8 L=512", "completes", None if peak is None else peak / 2**20,
                peak is not None, "B=8 L=512 (value: peak MB)")
    report = {"machine": grid["machine"], "checks": checks,
              "passed": sum(c["passed"] for c in checks), "total": len(checks)}
    (out / "attribution_targets.json").write_text(json.dumps(report, indent=1))
    lines = ["# Issue 3 targets", "", f"{grid['machine']['cpu_model']}, {grid['machine']['threads']} threads, "
             f"torch {grid['machine']['torch']}; {report['passed']} of {report['total']} checks pass.", "",
             "| target | limit | cell | value | pass |", "|---|---|---|---:|---|"]
    for c in checks:
        value = "n/a" if c["value"] is None else f"{c['value']:.2f}"
        lines.append(f"| {c['target']} | {c['limit']} | {c['cell']} | {value} | {'yes' if c['passed'] else 'NO'} |")
    (out / "attribution_targets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ig-repeats", type=int, default=2, help="timed runs of our IG and captum LayerIG")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-run", action="store_true", help="only evaluate the targets from existing JSON")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_run:
        run(out, args.repeats, args.threads, args.ig_repeats)
    evaluate(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
