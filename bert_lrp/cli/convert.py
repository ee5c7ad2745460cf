"""``bert-lrp convert`` and ``bert-lrp inspect-checkpoint``: the command line of the TensorFlow
checkpoint reader and converter (:mod:`bert_lrp.tf.convert` and :mod:`bert_lrp.tf.bundle` do the
work; no TensorFlow needed).

    bert-lrp convert --tf-checkpoint bert_model.ckpt --config bert_config.json --vocab vocab.txt --out DIR
    bert-lrp inspect-checkpoint bert_model.ckpt [--verify]

Errors are raised (TFCheckpointError and subclasses, ConfigError, OSError...); :func:`bert_lrp.cli.main`
reports them as one line on stderr.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Optional, Sequence

from .arguments import ArgumentParser
from ..tf.bundle import TFCheckpointError, TFCheckpointReader
from ..tf.convert import HEADS, convert_tf_checkpoint, format_names

__all__ = ["convert_main", "inspect_main", "build_convert_parser", "build_inspect_parser"]


def build_convert_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="bert-lrp convert",
        description="Convert a Google BERT TensorFlow checkpoint into a Hugging Face folder (no TensorFlow needed).")
    parser.add_argument("--tf-checkpoint", required=True, metavar="PREFIX",
                        help="checkpoint prefix (e.g. bert_model.ckpt), its .index file, or its folder")
    parser.add_argument("--config", required=True, metavar="JSON", help="Google's bert_config.json")
    parser.add_argument("--vocab", metavar="TXT", help="vocab.txt to copy into the output folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (written atomically)")
    parser.add_argument("--head", choices=HEADS, default="auto",
                        help="model head; auto picks it from the checkpoint (default)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--accept-damaged-skipped", action="store_true",
                        help="convert even if tensors that are not converted (optimizer slots, global_step, "
                             "unused heads) fail their crc32c or are cut off; they are named in a warning. "
                             "Damage in a converted weight is always an error")
    return parser


def convert_main(argv: Optional[Sequence[str]] = None) -> int:
    """``bert-lrp convert``: returns 0, or raises (TFCheckpointError and subclasses, ConfigError,
    OSError...); :func:`bert_lrp.cli.main` turns that into one line on stderr and exit code 1."""
    args = build_convert_parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = convert_tf_checkpoint(args.tf_checkpoint, args.config, args.out, args.vocab,
                                    args.head, args.overwrite, args.accept_damaged_skipped)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


def _format_size(n: int) -> str:
    """Human-readable byte count: ``512 B``, ``4.0 KiB``, ``89.4 MiB``."""
    if n < 1024:
        return f"{n} B"
    value, units = n / 1024, ["KiB", "MiB", "GiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def build_inspect_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="bert-lrp inspect-checkpoint",
                            description="List the tensors of a TensorFlow checkpoint.")
    parser.add_argument("prefix", help="checkpoint prefix, its .index file, or its folder")
    parser.add_argument("--verify", action="store_true", help="read every tensor and check its crc32c")
    return parser


def inspect_main(argv: Optional[Sequence[str]] = None) -> int:
    """``bert-lrp inspect-checkpoint PREFIX``: list name, dtype, shape and size of every tensor.
    With ``--verify``, damaged tensors and short shards are listed and the exit code is 1; an index
    that cannot be read raises (one line via :func:`bert_lrp.cli.main`)."""
    args = build_inspect_parser().parse_args(argv)
    reader = TFCheckpointReader(args.prefix)
    width = max((len(n) for n in reader.variables()), default=4)
    failures = 0
    for name, (dtype, shape) in reader.variables().items():
        size = reader.info(name).size
        line = f"{name:<{width}}  {dtype:<8}  {str(list(shape)):<14}  {_format_size(size)}"
        if args.verify and not reader.info(name).sliced:
            try:
                reader.verify_tensor(name)
                line += "  ok"
            except TFCheckpointError as error:
                failures += 1
                line += f"  FAILED: {error}"
        print(line)
    total = sum(reader.info(n).size for n in reader.variables())
    print(f"{len(reader)} tensors, {_format_size(total)} in {reader.num_shards} shard(s)")
    if args.verify:
        for shortfall in reader.check_shards():
            failures += 1
            print(f"FAILED: {shortfall.describe()}; tensors cut off: {format_names(list(shortfall.lost))}")
        print(f"verify: {failures} problem(s)" if failures else "verify: every tensor passed its crc32c check")
    return 1 if failures else 0


if __name__ == "__main__":
    from . import main as cli_main

    sys.exit(cli_main(["convert", *sys.argv[1:]]))
