"""``bert-lrp explain``: explain a prediction in the terminal, as a self-contained HTML file, as JSON,
or a whole data set as JSON lines. A front-end of the one road (:mod:`bert_lrp.attribution.road`).

    bert-lrp explain "a gripping , funny film"                       # LRP + GI + GS, terminal
    bert-lrp explain --methods lrp:attnlrp,lrp:cp-lrp,ig --html out.html --json out.json "one" "two"
    echo "one text per line" | bert-lrp explain -                     # or --file texts.txt
    bert-lrp explain --model ner-model --word Paris "She moved to Paris in May"   # token classification
    bert-lrp explain --file data.txt --jsonl out.jsonl                # a data set, resumable

Errors are raised (:mod:`bert_lrp.errors`); :func:`bert_lrp.cli.main` reports them as one line.
Terminal output shows control characters and bidi controls of the input as visible escapes.
``--html`` and ``--json`` are written atomically, and only when everything succeeded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from ..attribution import registry
from ..attribution.records import label_views
from ..attribution.plan import Plan
from ..attribution.road import Request, TextInput, json_payload, stream_texts
from ..data import read_inputs
from ..errors import UsageError
from ..models.loading import DEFAULT_MODEL, load_model, resolve_model_dir
from ..output import atomic_write_texts, output_locks
from ..views.terminal import colour_mode, printable, render_terminal
from .arguments import (ArgumentParser, add_method_options, add_overwrite, check_outputs, method_options, output_guard,
                        positive_int)
from .planning import plan_for_command

DEFAULT_METHODS = "lrp,gi,gs"

__all__ = ["main", "build_parser", "request_from", "run"]

EPILOG = """Texts longer than the model's positions are explained in overlapping windows (--stride;
--no-windows cuts them instead, with a warning). In the terminal, control characters and bidi
controls of the input are shown as visible escapes such as \\x1b or \\u202e, in every --color
mode. --html and --json are written atomically, only when everything succeeded. Errors are one
line on stderr (exit code 2: bad command line, 1: failure); bert-lrp --debug explain ... shows
the traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The parser; the methods' options come from the registry (so a newly registered method's
    options are flags here with no edit)."""
    parser = ArgumentParser(prog="bert-lrp explain", description="Explain a BERT classifier's prediction.",
                            epilog=EPILOG)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain; '-' reads one text per line from stdin")
    parser.add_argument("--model", metavar="DIR", help=f"model folder (default: {DEFAULT_MODEL} in the current folder, "
                        "the source tree or <prefix>/share/bert-lrp)")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from: {registry.describe()} "
                        f"(default {DEFAULT_METHODS}); lrp:<preset> entries run several presets in one pass")
    parser.add_argument("--target", help="label (name or id) to explain, or 'all' for every label from one pass; "
                        "default: the predicted one")
    parser.add_argument("--pair", help="second text of a sentence pair (used with every TEXT)")
    parser.add_argument("--file", metavar="FILE", help="read texts from this UTF-8 file: one per line, or a table "
                        "whose tab-separated header names a sentence column (sentence2 and label optional)")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report here")
    parser.add_argument("--json", metavar="FILE", help="write the records (scores, prediction, probabilities) as JSON here")
    parser.add_argument("--layer", type=int, help="attention map layer for the HTML (1-based, negative counts from "
                        "the last; default: the last)")
    parser.add_argument("--head", type=positive_int, default=1,
                        help="attention map head for the HTML (1-based; default 1)")
    parser.add_argument("--token-index", type=int, metavar="I", help="token classification: explain the word at this "
                        "word-piece position (its first piece is used; negative counts from the end)")
    parser.add_argument("--word", metavar="W", help="token classification: explain this word (its first occurrence)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="texts per attribution batch (default 8)")
    parser.add_argument("--batch-tokens", type=positive_int, metavar="N",
                        help="also at most N padded tokens per batch (bounds memory on long texts; default: no bound)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar on stderr (shown only when stderr is a terminal and not --quiet)")
    add_method_options(parser)
    parser.add_argument("--color", choices=["auto", "truecolor", "256", "none"], default="auto",
                        help="terminal colours (auto: only when stdout is a terminal and NO_COLOR is unset)")
    parser.add_argument("--quiet", action="store_true", help="no terminal output (only --html / --json)")
    data_set = parser.add_argument_group("data sets and long texts")
    data_set.add_argument("--jsonl", metavar="FILE", help="stream one JSON record per input line to FILE, in input "
                          "order, as they are computed (length-bucketed batches; resumable; sharded under torchrun)")
    data_set.add_argument("--resume", action="store_true", help="with --jsonl: skip the lines already in FILE")
    add_overwrite(parser, "an existing --html/--json/--jsonl file of another kind, or (--jsonl) an earlier run")
    data_set.add_argument("--hidden-relevance", action="store_true",
                          help="also write relevance per hidden unit (large)")
    data_set.add_argument("--stride", type=positive_int, metavar="N", help="texts longer than the model's positions "
                          "are explained in overlapping windows starting every N pieces (default: half a window)")
    data_set.add_argument("--no-windows", action="store_true",
                          help="cut long texts to the model's positions instead of explaining them in windows")
    return parser


def request_from(args: argparse.Namespace, html: bool = False) -> Request:
    """The road's :class:`Request` from a parsed command line (every road reads it the same way;
    it is checked once, against the model, by :func:`~bert_lrp.attribution.plan.plan_request`)."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    return Request(methods=methods, target=args.target, options=method_options(args), word=args.word,
                   token_index=args.token_index, batch_size=args.batch_size, batch_tokens=args.batch_tokens,
                   windows=not args.no_windows, stride=args.stride, layers=html, attentions=html,
                   hidden_relevance=args.hidden_relevance,
                   progress=not (args.quiet or args.no_progress) and sys.stderr.isatty())


def warn(message: str) -> None:
    print(f"bert-lrp explain: warning: {printable(message)}", file=sys.stderr)


def _attention_choice(args: argparse.Namespace, model) -> Optional[int]:
    """The HTML's attention layer (1-based), checked; None without --html."""
    if not args.html:
        return None
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    layer = args.layer if args.layer is not None else layers
    if layer < 0:
        layer += layers + 1
    if not 1 <= layer <= layers:
        raise UsageError(f"--layer must be in 1..{layers} (or -{layers}..-1), got {args.layer}")
    if not 1 <= args.head <= heads:
        raise UsageError(f"--head must be in 1..{heads}, got {args.head}")
    return layer


class Explained(list):
    """:func:`run`'s ``(explanation, record)`` pairs, and the ``plan`` they were explained with
    (checked once; ``--json`` writes its settings)."""

    plan: Plan


def run(args: argparse.Namespace, directory: Optional[Path] = None) -> Explained:
    """Every input's explanation and the record the views draw (per-layer scores and the chosen
    attention added for ``--html``), in input order (``--target all``: one record with ``labels``)."""
    from ..attribution.heatmaps import MAX_ATTENTION_TOKENS

    request = request_from(args, html=bool(args.html))
    directory = resolve_model_dir(args.model) if directory is None else directory
    inputs: List[TextInput] = read_inputs(args.texts, args.file, args.pair)  # input errors first: no model needed
    model, tokenizer = load_model(directory)
    layer = _attention_choice(args, model)
    records = Explained()
    records.plan = plan = plan_for_command(model, tokenizer, request)
    for _, explained in stream_texts(model, tokenizer, inputs, plan, warn=warn):
        record = explained.record(hidden_relevance=args.hidden_relevance, layers=request.layers)
        if explained.attentions is not None and layer is not None:
            shown = min(len(explained.tokens), MAX_ATTENTION_TOKENS)  # the HTML shows at most this many
            matrix = explained.attentions[layer - 1, args.head - 1, :shown, :shown]
            record["attention"] = {"layer": layer, "head": args.head, "matrix": matrix.tolist()}
        records.append((explained, record))
    return records


def main(argv: Optional[List[str]] = None) -> int:
    """``bert-lrp explain``. Raises on bad input (:mod:`bert_lrp.errors`); :func:`bert_lrp.cli.main`
    turns that into one line on stderr and an exit code."""
    args = build_parser().parse_args(argv)
    directory = resolve_model_dir(args.model)
    guard = output_guard(args, directory)
    check_outputs(args, guard)
    if args.jsonl:
        from .stream import run_jsonl

        if args.html or args.json:
            raise UsageError("--jsonl streams records; give --html/--json in a separate run")
        from . import request_describer

        return run_jsonl(args, directory, request_from(args), warn, guard, request_describer(build_parser(), args))
    if args.resume:
        raise UsageError("--resume goes with --jsonl FILE")
    with output_locks([args.html, args.json]):  # one writer per output, from the first step
        explained = run(args, directory)
        _show_and_write(args, directory, explained)
    return 0


def _show_and_write(args: argparse.Namespace, directory: Path, explained: Explained) -> None:
    """The terminal view, then ``--html`` and ``--json``, all or nothing, after everything else succeeded."""
    records = [record for _, record in explained]
    model_name = str(directory)
    outputs = {}
    if args.html:
        from ..views.html_report import render_html

        outputs[args.html] = render_html([view for r in records for view in label_views(r)], model=model_name)
    if args.json:
        payload = json_payload(model_name, explained.plan, [item for item, _ in explained])
        outputs[args.json] = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
    if not args.quiet:
        mode = colour_mode(sys.stdout, None if args.color == "auto" else args.color)
        print("\n\n".join(render_terminal(view, mode) for r in records for view in label_views(r)))
    atomic_write_texts(outputs)
    if not args.quiet:
        for label, path in (("HTML report", args.html), ("JSON", args.json)):
            if path:
                print(f"{label}: {printable(os.path.abspath(path))}", file=sys.stderr)


if __name__ == "__main__":
    from ..cli import main as cli_main

    sys.exit(cli_main(["explain", *sys.argv[1:]]))
