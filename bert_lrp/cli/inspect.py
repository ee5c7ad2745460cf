"""``bert-lrp inspect``: look inside a BERT model (the work: :mod:`bert_lrp.inspection`).

    bert-lrp inspect mask --model MLM_DIR [--top-k 5] [--json OUT.json] [--html OUT.html] \\
        "The girl ran to a local pub to [MASK] the din of her city."
    bert-lrp inspect embeddings --model DIR --file SENTENCES.txt --words bank,film --json OUT.json \\
        [--html OUT.html] [--seed 0] [--samples 1000]

``mask`` needs a masked-LM model (``BertForMaskedLM`` / ``BertForPreTraining``, e.g. a Google BERT
TensorFlow checkpoint converted with ``bert-lrp convert``); ``embeddings`` works with any BERT
(its encoder's hidden states are used). Errors are one line on stderr (exit code 2: bad command
line, 1: failure). ``--html`` / ``--json`` are written atomically, only when everything succeeded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from ..errors import UsageError
from ..output import output_locks
from .arguments import (ArgumentParser, add_page_outputs, check_outputs, output_guard, parse_command_line, positive_int,
                        seed_number)

__all__ = ["main", "build_parser"]


def _samples(text: str) -> int:
    """argparse type of ``--samples``: 2..100,000 random words (pairs need two; each is a vector per layer)."""
    value = positive_int(text)
    if not 2 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"must be in 2..100,000, got {value}")
    return value


def _warn(message: str) -> None:
    from .._text import printable

    print(f"bert-lrp inspect: warning: {printable(message)}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="bert-lrp inspect", description="Look inside a BERT model.",
                            epilog="bert-lrp inspect COMMAND --help for the options of each. Layer ablation: "
                                   "bert-lrp evaluate --skip-layers, bert-lrp train --freeze-layers.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    mask = commands.add_parser("mask", help="top predictions for [MASK] per layer (logit lens) and attention from it",
                               description="Masked-word view: the output's top-k predictions for each [MASK], the "
                                           "logit lens per layer (the model's masked-LM head applied to each layer's "
                                           "hidden state) and, per layer and head, the attention from [MASK].")
    mask.add_argument("text", metavar="TEXT", help="a sentence with [MASK] where the hidden word goes")
    mask.add_argument("--model", metavar="DIR", help="masked-LM model folder (BertForMaskedLM or BertForPreTraining)")
    mask.add_argument("--top-k", type=positive_int, default=5, help="predictions shown per layer (default 5)")
    mask.add_argument("--top-attended", type=positive_int, default=3,
                      help="attended tokens listed per head (default 3)")
    mask.add_argument("--all-heads", action="store_true", help="terminal: list the top tokens of every head")
    add_page_outputs(mask, "write the view as JSON here")
    emb = commands.add_parser("embeddings", help="self-similarity, anisotropy and PCA of word embeddings per layer",
                              description="Per-layer cosine similarities between the target words' contextual "
                                          "embeddings, the anisotropy baseline (random words of the same file, "
                                          "seeded), corrected similarities and a 2-D PCA per layer.")
    emb.add_argument("--model", metavar="DIR", help="model folder (default: checkpoints/minilm-sst2)")
    emb.add_argument("--file", required=True, metavar="FILE",
                     help="UTF-8 text, one sentence per line; or a .tsv/.csv/.jsonl table with a 'sentence' column")
    emb.add_argument("--words", required=True, metavar="LIST", help="comma-separated target words, e.g. bank,film")
    emb.add_argument("--samples", type=_samples, default=1000,
                     help="random words for the anisotropy baseline (default 1000)")
    emb.add_argument("--seed", type=seed_number, default=0, help="seed of the random word sample (default 0)")
    emb.add_argument("--max-occurrences", type=positive_int, default=50,
                     help="occurrences used per target word, the first in the file (default 50)")
    emb.add_argument("--batch-size", type=positive_int, default=32, help="sentences per forward pass (default 32)")
    add_page_outputs(emb, "write the numbers as JSON here")
    for sub in (mask, emb):
        sub.add_argument("--threads", type=positive_int, help="torch threads")
    return parser


def _write(args: argparse.Namespace, payload: dict, html_text) -> None:
    from .._text import printable
    from ..output import atomic_write_texts

    outputs = {}
    if args.json:
        outputs[args.json] = json.dumps(payload, indent=1) + "\n"
    if args.html:
        outputs[args.html] = html_text()
    atomic_write_texts(outputs)
    if not args.quiet:
        for label, path in (("HTML", args.html), ("JSON", args.json)):
            if path:
                print(f"{label}: {printable(os.path.abspath(path))}", file=sys.stderr)


def _mask(args: argparse.Namespace) -> int:
    from ..inspection.mask import load_masked_lm, masked_word_view, render_terminal
    from ..models.loading import resolve_model_dir
    from ..views.inspection_html import render_mask_html

    if "[MASK]" not in args.text and "<mask>" not in args.text:  # before loading a model (BERT's or RoBERTa's)
        raise UsageError("the text has no [MASK] token: write [MASK] (RoBERTa: <mask>) where the hidden word goes, "
                         "e.g. \"The girl ran to a local pub to [MASK] the din of her city.\"")
    directory = resolve_model_dir(args.model)
    model, tokenizer = load_masked_lm(directory)
    report = masked_word_view(model, tokenizer, args.text, args.top_k, args.top_attended, warn=_warn)
    if not args.quiet:
        print(render_terminal(report, args.all_heads))
    payload = {"model": str(directory), "model_class": type(model).__name__, **report}
    _write(args, payload, lambda: render_mask_html(report, str(directory)))
    return 0


def _embeddings(args: argparse.Namespace) -> int:
    from ..inspection.embeddings import embedding_report, read_sentences, render_terminal
    from ..models.loading import load_model, resolve_model_dir
    from ..views.inspection_html import render_embeddings_html

    directory = resolve_model_dir(args.model)
    words = [w.strip() for w in args.words.split(",") if w.strip()]
    if not words:
        raise UsageError("--words is empty; give comma-separated words, e.g. --words bank,film")
    sentences = read_sentences(args.file)
    if not sentences:
        raise UsageError(f"--file {args.file}: no sentences (the file is empty)")
    model, tokenizer = load_model(directory, "encoder")  # the bare encoder: task heads are left unused
    report = embedding_report(model, tokenizer, sentences, words, args.samples, args.seed, args.max_occurrences,
                              args.batch_size, source=f"--file {args.file}", warn=_warn)
    if not args.quiet:
        print(render_terminal(report))
    payload = {"model": str(directory), "file": args.file, **report}
    _write(args, payload, lambda: render_embeddings_html(report, str(directory), args.file))
    return 0


def _model_dir_if_any(model: Optional[str]):
    """The model folder, for the output guard; None when it cannot be resolved (the command
    reports that at its usual place)."""
    from ..errors import BertLrpError
    from ..models.loading import resolve_model_dir

    try:
        return resolve_model_dir(model)
    except BertLrpError:
        return None


def main(argv: Optional[List[str]] = None) -> int:
    """``bert-lrp inspect``. Raises on bad input (:mod:`bert_lrp.errors`); :func:`bert_lrp.cli.main`
    turns that into one line on stderr and an exit code."""
    args = parse_command_line(build_parser(), argv)
    check_outputs(args, output_guard(args, _model_dir_if_any(args.model)))
    with output_locks([args.json, args.html]):
        return _mask(args) if args.command == "mask" else _embeddings(args)


if __name__ == "__main__":
    from . import main as cli_main

    sys.exit(cli_main(["inspect", *sys.argv[1:]]))
