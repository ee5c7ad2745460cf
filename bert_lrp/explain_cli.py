"""``bert-lrp explain``: explain a prediction in the terminal, as a self-contained HTML file, as JSON.

    bert-lrp explain "a gripping , funny film"                       # LRP + GI + GS, terminal
    bert-lrp explain --methods lrp,ig --html out.html --json out.json "text one" "text two"
    echo "one text per line" | bert-lrp explain -                     # or --file texts.txt
    bert-lrp explain --model ner-model --word Paris "She moved to Paris in May"   # token classification
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from .attribution import ALIASES, explain
from .views import colour_mode, render_terminal

DEFAULT_MODEL = "checkpoints/minilm-sst2"
DEFAULT_METHODS = "lrp,gi,gs"


class UsageError(Exception):
    """A problem with the command line or its inputs, reported without a traceback."""


# ------------------------------------------------------------------ model loading
def resolve_model_dir(model: Optional[str]) -> Path:
    """``--model`` as given; without it ``checkpoints/minilm-sst2`` relative to the current
    directory, then to the repository root."""
    if model:
        path = Path(model)
        if not path.is_dir() and not path.is_file():
            raise UsageError(f"model not found: {model} (a folder with config.json, model.safetensors and vocab.txt)")
        return path
    candidates = [Path.cwd() / DEFAULT_MODEL, Path(__file__).resolve().parents[1] / DEFAULT_MODEL]
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    raise UsageError(f"no model given and the default model {DEFAULT_MODEL} was not found (looked in "
                     f"{', '.join(str(p) for p in candidates)}); train it first or pass --model DIR")


def load_model(directory: Path):
    """The classifier in ``directory`` (token classification if config.json says so) and its tokenizer."""
    from .config import BertConfig
    from .modeling import BertForSequenceClassification, BertForTokenClassification
    from .tokenization import BertTokenizer

    folder = directory if directory.is_dir() else directory.parent
    if not (folder / "config.json").is_file():
        raise UsageError(f"{folder} has no config.json")
    config = BertConfig.from_pretrained(folder)
    architectures = config.extra.get("architectures") or []
    token_model = any("TokenClassification" in a for a in architectures)
    cls = BertForTokenClassification if token_model else BertForSequenceClassification
    model = cls.from_pretrained(directory, config=config)
    model.eval()
    return model, BertTokenizer.from_pretrained(folder)


def parse_methods(text: str) -> List[str]:
    methods = []
    for name in (m.strip() for m in text.split(",")):
        if not name:
            continue
        if name.lower() not in ALIASES:
            raise UsageError(f"unknown method {name!r}; choose from lrp, gi, gs, lat, rollout, ig")
        canonical = ALIASES[name.lower()]
        if canonical not in methods:
            methods.append(canonical)
    if not methods:
        raise UsageError("--methods is empty")
    return methods


def parse_target(model, target: Optional[str]):
    if target is None:
        return None
    labels = model.config.label2id
    if target in labels:
        return target
    try:
        value = int(target)
    except ValueError:
        raise UsageError(f"unknown --target {target!r}; the model's labels are {', '.join(labels)}") from None
    if not 0 <= value < model.config.num_labels:
        raise UsageError(f"--target {value} is outside 0..{model.config.num_labels - 1}")
    return value


def read_texts(texts: Sequence[str], file: Optional[str]) -> List[str]:
    result: List[str] = []
    if file:
        with open(file, encoding="utf-8") as handle:
            result += [line.rstrip("\n") for line in handle]
    for text in texts:
        if text == "-":
            result += [line.rstrip("\n") for line in sys.stdin]
        else:
            result.append(text)
    result = [t for t in result if t.strip()]
    if not result:
        raise UsageError("no text to explain: give TEXT arguments, '-' for stdin, or --file")
    return result


# ------------------------------------------------------------------ reports
def _word_of(encoding, index: int, token_index: Optional[int], word: Optional[str]) -> int:
    """Position of the first word piece of the chosen word."""
    word_ids, sequence_ids = encoding.word_ids[index], encoding.sequence_ids[index]
    if token_index is not None:
        length = int(encoding["attention_mask"][index].sum())
        position = token_index if token_index >= 0 else length + token_index
        if not 0 <= position < length:
            raise UsageError(f"--token-index {token_index} is outside the {length} tokens of the text")
        if word_ids[position] is None:
            raise UsageError(f"--token-index {token_index} is a special token ({encoding.tokens[index][position]})")
        key = (sequence_ids[position], word_ids[position])
    else:
        from .words import merge_word_pieces

        words = merge_word_pieces(torch.zeros(len(word_ids)), encoding, index)
        matches = [w for w in words if w["word"] == word] or [w for w in words if w["word"].lower() == word.lower()]
        if not matches:
            raise UsageError(f"--word {word!r} is not a word of the text (words: {', '.join(w['word'] for w in words)})")
        position = matches[0]["positions"][0]
        key = (sequence_ids[position], word_ids[position])
    return next(p for p, k in enumerate(zip(sequence_ids, word_ids)) if k == key)


def build_report(result, index: int, model, methods: Sequence[str], attention_layer: Optional[int] = None,
                 attention_head: Optional[int] = None, attentions=None) -> dict:
    """A JSON-ready dict for example ``index`` of an :class:`Explanation` (see ``render_terminal``)."""
    from .words import merge_word_pieces

    encoding = result.encoding
    length = int(result.attention_mask[index].sum())
    labels = model.config.labels_by_id()
    position = None if result.target_position is None else int(result.target_position[index])
    logits = result.logits[index] if position is None else result.logits[index, position]
    probabilities = torch.softmax(logits.float(), -1)
    text, pair = encoding.texts[index]
    report = {
        "text": text if isinstance(text, str) else " ".join(text),
        "pair": pair if pair is None or isinstance(pair, str) else " ".join(pair),
        "tokens": list(encoding.tokens[index][:length]),
        "prediction": labels[int(logits.argmax())],
        "probabilities": {labels[i]: float(p) for i, p in enumerate(probabilities)},
        "logits": {labels[i]: float(v) for i, v in enumerate(logits)},
        "target": labels[int(result.target[index])],
        "target_logit": float(result.target_logit[index]),
        "target_position": position,
        "target_word": None,
        "methods": list(methods),
        "scores": {},
        "conservation": {m: float(v[index]) for m, v in result.conservation.items()},
    }
    lrp_shares = result.embedding_shares.get("lrp")
    for method in methods:
        scores = result.scores[method][index]
        words = merge_word_pieces(scores, encoding, index)
        for w in words:
            if method == "lrp" and lrp_shares is not None:
                w["shares"] = {name: float(part[index, w["positions"]].sum()) for name, part in lrp_shares.items()}
        report["scores"][method] = {"tokens": [float(s) for s in scores[:length]], "words": words}
    if position is not None:
        words = merge_word_pieces(torch.zeros(length), encoding, index)
        chosen = next(i for i, w in enumerate(words) if position in w["positions"])
        report["target_word"] = {"index": chosen, "word": words[chosen]["word"], "position": position}
        if lrp_shares is not None:
            pieces = words[chosen]["positions"]
            report["embedding_shares"] = {name: float(part[index, pieces].sum()) for name, part in lrp_shares.items()}
    if result.layer_scores:
        report["layer_scores"] = {m: [[float(v) for v in layer[index][:length]] for layer in layers]
                                  for m, layers in result.layer_scores.items()}
    if attentions is not None and attention_layer is not None:
        matrix = attentions[attention_layer - 1][index, attention_head - 1, :length, :length]
        report["attention"] = {"layer": attention_layer, "head": attention_head,
                               "matrix": [[float(v) for v in row] for row in matrix]}
    return report


def _json_report(report: dict) -> dict:
    out = dict(report)
    out.pop("layer_scores", None)
    out.pop("attention", None)
    return out


# ------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert-lrp explain", description="Explain a BERT classifier's prediction.")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain; '-' reads one text per line from stdin")
    parser.add_argument("--model", help=f"model folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated: lrp, gi, gs, lat, rollout, ig "
                        f"(default {DEFAULT_METHODS})")
    parser.add_argument("--rule", default="attnlrp", choices=["attnlrp", "cp-lrp", "bert-lrp"], help="LRP preset")
    parser.add_argument("--target", help="label (name or id) to explain; default: the predicted one")
    parser.add_argument("--pair", help="second text of a sentence pair (used with every TEXT)")
    parser.add_argument("--file", help="read texts from this file, one per line")
    parser.add_argument("--html", help="write a self-contained HTML report here")
    parser.add_argument("--json", help="write scores, prediction and probabilities as JSON here")
    parser.add_argument("--layer", type=int, help="attention map layer for the HTML (1-based; default: the last)")
    parser.add_argument("--head", type=int, default=1, help="attention map head for the HTML (1-based; default 1)")
    parser.add_argument("--token-index", type=int, help="token classification: explain the word at this word-piece "
                        "position (its first piece is used)")
    parser.add_argument("--word", help="token classification: explain this word (its first occurrence)")
    parser.add_argument("--ig-steps", type=int, default=50)
    parser.add_argument("--ig-batch", type=int, default=64, help="IG rows per forward pass (bounds memory)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--color", choices=["auto", "truecolor", "256", "none"], default="auto",
                        help="terminal colours (auto: only when stdout is a terminal)")
    parser.add_argument("--quiet", action="store_true", help="no terminal output (only --html / --json)")
    return parser


def run(args: argparse.Namespace) -> List[dict]:
    from .tokenization import TokenizerError

    methods = parse_methods(args.methods)
    directory = resolve_model_dir(args.model)
    model, tokenizer = load_model(directory)
    token_model = type(model).__name__ == "BertForTokenClassification"
    if token_model and args.token_index is None and args.word is None:
        raise UsageError("this is a token-classification model: choose the word with --word W or --token-index I")
    if not token_model and (args.token_index is not None or args.word is not None):
        raise UsageError("--word/--token-index need a token-classification model")
    if args.token_index is not None and args.word is not None:
        raise UsageError("give either --word or --token-index, not both")
    texts = read_texts(args.texts, args.file)
    label = parse_target(model, args.target)
    layers = model.config.num_hidden_layers
    heads = model.config.num_attention_heads
    want_html = bool(args.html)
    attention_layer = (args.layer if args.layer is not None else layers) if want_html else None
    if want_html:
        if attention_layer < 0:
            attention_layer += layers + 1
        if not 1 <= attention_layer <= layers:
            raise UsageError(f"--layer must be in 1..{layers}")
        if not 1 <= args.head <= heads:
            raise UsageError(f"--head must be in 1..{heads}")
    reports: List[dict] = []
    for first in range(0, len(texts), max(1, args.batch_size)):
        chunk = texts[first:first + args.batch_size]
        try:
            encoding = tokenizer(chunk, [args.pair] * len(chunk) if args.pair else None)
        except TokenizerError as error:
            raise UsageError(str(error)) from None
        target = label
        if token_model:
            target = [(_word_of(encoding, i, args.token_index, args.word), label) for i in range(len(chunk))]
        result = explain(model, encoding, methods, target=target, rule=args.rule, layers=want_html,
                         ig_steps=args.ig_steps, ig_internal_batch_size=args.ig_batch)
        attentions = None
        if want_html:
            with torch.no_grad():
                output = model(**{k: encoding[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                               output_attentions=True)
            attentions = output.attentions
        reports += [build_report(result, i, model, methods, attention_layer, args.head, attentions)
                    for i in range(len(chunk))]
    return reports


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ._io import atomic_write_text

    try:
        reports = run(args)
    except UsageError as error:
        print(f"bert-lrp explain: {error}", file=sys.stderr)
        return 2
    model_name = str(resolve_model_dir(args.model))
    if not args.quiet:
        mode = colour_mode(sys.stdout, None if args.color == "auto" else args.color)
        print("\n\n".join(render_terminal(r, mode) for r in reports))
    if args.html:
        from .html_report import render_html

        atomic_write_text(args.html, render_html(reports, model=model_name))
        if not args.quiet:
            print(f"HTML report: {os.path.abspath(args.html)}", file=sys.stderr)
    if args.json:
        payload = {"model": model_name, "rule": args.rule, "examples": [_json_report(r) for r in reports]}
        atomic_write_text(args.json, json.dumps(payload, indent=1) + "\n")
        if not args.quiet:
            print(f"JSON: {os.path.abspath(args.json)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
