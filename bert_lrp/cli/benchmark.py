"""``bert-lrp benchmark``: wall time and peak memory of the attribution methods, with ratios to a
plain forward+backward measured alternately in the same process (the work:
:mod:`bert_lrp.evaluation.benchmark`; ``--dataset``: :mod:`bert_lrp.evaluation.dataset_benchmark`).

    bert-lrp benchmark --quick --out runs/bench                      # a tiny grid, < 1 min
    bert-lrp benchmark --methods lrp,ig --peers --data dev.tsv --out runs/bench
    bert-lrp benchmark --dataset dev.tsv --model checkpoints/minilm-sst2 --out runs/dataset

Methods are the registry's (every registered method by its shortest name, or any of its names)
and the combined entry ``gs+gi+lrp``; peers that are not installed are skipped, by name and
reason. Errors are raised (:mod:`bert_lrp.errors`); :func:`bert_lrp.cli.main` reports them as one
line (exit code 1 when an installed peer failed; the other results are written).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from ..errors import UsageError
from ..evaluation import benchmark as work
from ..output import output_lock
from .arguments import ArgumentParser, add_switches, output_guard, positive_int

__all__ = ["build_parser", "parse_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="bert-lrp benchmark", description=work.__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Hugging Face BERT folder, hub id or pkg:<module> (default: the MiniLM "
                        "package's)")
    parser.add_argument("--methods", default=None, help=f"comma list from {', '.join(work.our_methods())} "
                        f"(default {work.DEFAULT_METHODS})")
    parser.add_argument("--seq-lens", default=None, help=f"comma list (default {work.DEFAULT_SEQ_LENS})")
    parser.add_argument("--batch-sizes", default=None, help=f"comma list (default {work.DEFAULT_BATCHES})")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all cores; --quick: 1)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="timed runs per entry (default 5)")
    parser.add_argument("--ig-repeats", type=positive_int, default=3, help="timed runs for IG-like entries (default 3)")
    parser.add_argument("--ig-steps", type=positive_int, default=None, help=f"IG steps (default {work.default_ig_steps()})")
    parser.add_argument("--ig-max-tokens", type=int, default=1024,
                        help="IG and captum LayerIG run only where batch x length <= this (default 1024)")
    parser.add_argument("--ig-internal-tokens", type=int, default=8192,
                        help="bounded IG internal batch: rows per pass = min(64, this // length)")
    add_switches(parser, (("--peers", "also captum, transformers and LXT"),
                          ("--no-memory", "skip the peak-memory workers"),
                          ("--memory-only", "peak memory only (no timing)"),
                          ("--quick", "a tiny grid (< 1 min), e.g. for tests")))
    parser.add_argument("--data", "--text", dest="text", metavar="FILE",
                        help="text to cut inputs from: a TSV with a 'sentence' column or any UTF-8 text (default: "
                             "the SST-2 dev sample built into the package; --text is the older spelling)")
    parser.add_argument("--name", default="benchmark", help="base name of the output files")
    parser.add_argument("--out", required=True, help="output folder (JSON, markdown, plot)")
    parser.add_argument("--dataset", metavar="FILE", help="data-set mode: explain every sentence of FILE (TSV with a "
                        "'sentence' column, or one text per line) end to end, against transformers' gradient floor "
                        "in the same run (--model: a classifier folder, default the shipped model; --repeats: "
                        "rounds, default 3)")
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="--dataset: only the first N sentences")
    return parser


def _positive_list(text, option: str, minimum: int = 1, maximum: int = 100_000) -> List[int]:
    """``"32,128"`` -> ``[32, 128]``, each in ``minimum..maximum``; else a :class:`UsageError` naming ``option``."""
    values = []
    for part in (p.strip() for p in str(text).split(",")):
        try:
            value = int(part)
        except ValueError:
            raise UsageError(f"{option} {text!r}: expected comma-separated whole numbers, got {part!r}") from None
        if not minimum <= value <= maximum:
            raise UsageError(f"{option} {text!r}: {value} is outside {minimum}..{maximum:,}")
        values.append(value)
    return values


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset:
        return args
    defaults = dict(methods=work.DEFAULT_METHODS, seq_lens=work.DEFAULT_SEQ_LENS, batch_sizes=work.DEFAULT_BATCHES,
                    repeats=5, ig_steps=work.default_ig_steps())
    if args.quick:
        defaults.update(work.QUICK)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    names = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    unknown = [m for m in names if work.entry_name(m) is None]
    if unknown:
        choices = work.our_methods() + work.PEERS
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
    args.methods = list(dict.fromkeys(work.entry_name(m) for m in names))
    args.seq_lens = _positive_list(args.seq_lens, "--seq-lens", minimum=3)  # [CLS], one piece, [SEP]
    args.batch_sizes = _positive_list(args.batch_sizes, "--batch-sizes")
    if args.threads is None:
        args.threads = 1 if args.quick else (os.cpu_count() or 1)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """``bert-lrp benchmark``. Raises on bad input (:mod:`bert_lrp.errors`) and, at the end, when
    an installed peer failed; :func:`bert_lrp.cli.main` turns that into one line and an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_memory"]:  # the memory worker, as `python -m bert_lrp.evaluation.benchmark _memory`
        return work.worker_main(argv)
    args = parse_args(argv)
    _check_out(args)
    with output_lock(args.out):
        return _run(args)


def _check_out(args: argparse.Namespace) -> None:
    """``--out`` is a folder; the files written in it are no input of the run nor a model file."""
    from ..models.loading import resolve_model_dir

    model_dir = resolve_model_dir(args.model) if args.model else None
    names = ("dataset.json", "dataset.md") if args.dataset else \
        tuple(f"{args.name}.{suffix}" for suffix in ("json", "md", "png", "log"))
    output_guard(args, model_dir).check_files_in("out", args.out, names)


def _run(args: argparse.Namespace) -> int:
    if args.dataset:
        from ..evaluation.dataset_benchmark import run_dataset_benchmark
        from ..models.loading import resolve_model_dir

        result = run_dataset_benchmark(resolve_model_dir(args.model), Path(args.dataset), Path(args.out),
                                       rounds=args.repeats or 3, threads=args.threads or os.cpu_count() or 1,
                                       limit=args.limit)
        print((Path(args.out) / "dataset.md").read_text(encoding="utf-8"))
        return 0 if result["median_s"] else 1
    settings = work.BenchmarkSettings(
        out=args.out, model=args.model, methods=args.methods, seq_lens=args.seq_lens, batch_sizes=args.batch_sizes,
        threads=args.threads, repeats=args.repeats, ig_repeats=args.ig_repeats, ig_steps=args.ig_steps,
        ig_max_tokens=args.ig_max_tokens, ig_internal_tokens=args.ig_internal_tokens, peers=args.peers,
        no_memory=args.no_memory, memory_only=args.memory_only, quick=args.quick, text=args.text,
        name=args.name)
    return work.run_benchmark(settings)


if __name__ == "__main__":
    from . import main as cli_main

    sys.exit(cli_main(["benchmark", *sys.argv[1:]]))
