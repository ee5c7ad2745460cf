"""``bert-lrp explain``: explain a prediction in the terminal, as a self-contained HTML file, as JSON.

    bert-lrp explain "a gripping , funny film"                       # LRP + GI + GS, terminal
    bert-lrp explain --methods lrp,ig --html out.html --json out.json "text one" "text two"
    echo "one text per line" | bert-lrp explain -                     # or --file texts.txt
    bert-lrp explain --model ner-model --word Paris "She moved to Paris in May"   # token classification

Errors are raised (:mod:`bert_lrp.errors`); ``bert-lrp explain`` (:func:`bert_lrp.cli.main`) reports
them as one line. Texts longer than the model's maximum length are cut, with a warning on stderr.
Terminal output shows control characters and bidi controls of the input as visible escapes
(:func:`bert_lrp._text.printable`). ``--html`` and ``--json`` are written atomically, and only
when everything succeeded.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import site
import sys
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

from ..attribution import registry
from ..attribution.explain import explain
from ..errors import ArgumentParser, InputFileError, UsageError, unicode_message
from ..rules.composites import LRP_PRESETS
from ..views.terminal import colour_mode, printable, render_terminal

DEFAULT_MODEL = "checkpoints/minilm-sst2"
DEFAULT_METHODS = "lrp,gi,gs"
SHARE_FOLDER = "share/bert-lrp"  # where setup.py's data_files put the default model under the prefix

__all__ = ["UsageError", "main", "build_parser", "run", "build_report", "resolve_model_dir", "load_model"]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# ------------------------------------------------------------------ model loading
def default_model_candidates() -> List[Path]:
    """Where the default model is looked for, in order: ``checkpoints/minilm-sst2`` under the
    current folder, under the source tree (a checkout or an editable install), and under
    ``<prefix>/share/bert-lrp`` where ``pip install .`` puts it (``sys.prefix``, then the
    ``--user`` base)."""
    roots = [Path.cwd(), Path(__file__).resolve().parents[2], Path(sys.prefix) / SHARE_FOLDER]  # [2]: the source tree
    with contextlib.suppress(Exception):
        roots.append(Path(site.getuserbase()) / SHARE_FOLDER)
    candidates: List[Path] = []
    for root in roots:
        path = root / DEFAULT_MODEL
        if path not in candidates:
            candidates.append(path)
    return candidates


def resolve_model_dir(model: Optional[str]) -> Path:
    """``--model`` as given; without it the first of :func:`default_model_candidates` that holds a
    ``config.json``."""
    if model:
        path = Path(model)
        from ..models.hub import looks_like_hub_id, resolve_hub_id

        if not path.exists() and looks_like_hub_id(model):  # org/name: the Hugging Face cache, or a download
            return Path(resolve_hub_id(model))
        if not path.is_dir() and not path.is_file():
            raise UsageError(f"--model {model}: no such folder (expected a folder with config.json, "
                             "model.safetensors and vocab.txt)")
        return path
    candidates = default_model_candidates()
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    raise UsageError(f"no --model given and the default model {DEFAULT_MODEL} was not found (looked in "
                     f"{', '.join(str(p) for p in candidates)}); pass --model DIR, a folder with config.json, "
                     "model.safetensors and vocab.txt")


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Name ``path`` in the error when it is not valid UTF-8 (the readers raise a bare UnicodeDecodeError)."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise InputFileError(unicode_message(error, str(path), locate=False)) from None


def _checkpoint_error(error: Exception, folder: Path) -> Exception:
    """A shorter message for weights that ``torch.load(weights_only=True)`` refused: such a pickle
    would run code or build objects other than tensors when loaded, so it is never loaded."""
    import pickle

    cause = error.__cause__
    if not isinstance(cause, pickle.UnpicklingError) and "Weights only load failed" not in str(error):
        return error
    detail = next((line.strip() for line in str(cause or error).splitlines()
                   if "GLOBAL" in line or "Unsupported" in line or "not allowed" in line), "")
    names = [name for name in ("pytorch_model.bin",) if (folder / name).is_file()]
    where = str(folder / names[0]) if names and folder.is_dir() else str(folder)
    from ..models.checkpoint import CheckpointError

    return CheckpointError(f"{where}: refused to load: this pickle holds more than tensors and could run code "
                           f"when loaded{f' ({detail.rstrip(chr(46))})' if detail else ''}; "
                           "only safetensors files and plain tensor state dicts are read")


def load_model(directory: Path):
    """The classifier in ``directory`` (token classification if config.json says so) and its tokenizer;
    any supported family (config.json's ``model_type``: bert, roberta, distilbert, electra)."""
    from ..models.auto import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification
    from ..models.auto import AutoTokenizer
    from ..models.checkpoint import CheckpointError

    directory = Path(directory)
    folder = directory if directory.is_dir() else directory.parent
    if not (folder / "config.json").is_file():
        raise UsageError(f"--model {directory}: {folder} has no config.json (expected a folder with config.json, "
                         "model.safetensors and vocab.txt)")
    with _reading(folder / "config.json"):
        config = AutoConfig.from_pretrained(folder)
    architectures = config.extra.get("architectures") or []
    token_model = any("TokenClassification" in a for a in architectures)
    cls = AutoModelForTokenClassification if token_model else AutoModelForSequenceClassification
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(directory, config=config)
    except CheckpointError as error:
        raise _checkpoint_error(error, directory) from None
    model.eval()
    with _reading(folder / "vocab.txt"):
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def parse_methods(text: str) -> List[str]:
    methods = []
    for name in (m.strip() for m in text.split(",")):
        if not name:
            continue
        try:
            canonical = registry.get(name).name
        except ValueError:
            raise UsageError(f"--methods: unknown method {name!r}; choose from {registry.describe()}") from None
        if canonical not in methods:
            methods.append(canonical)
    if not methods:
        raise UsageError("--methods is empty")
    return methods


def parse_target(model, target: Optional[str]):
    if target is None or target == "all":
        return target
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


def _lines(text: str) -> List[str]:
    """One text per line (``\n`` or ``\r\n``; other control characters stay inside the text)."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _read_stdin() -> str:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream without bytes underneath (e.g. io.StringIO)
        return sys.stdin.read()
    from .._io import decode_utf8

    return decode_utf8(buffer.read(), "stdin")


def read_inputs(texts: Sequence[str], file: Optional[str]) -> List[Tuple[str, str]]:
    """``(text, where it came from)`` for the lines of ``--file`` (strict UTF-8), then the TEXT
    arguments, ``-`` standing for the lines of stdin (strict UTF-8); blank lines are skipped."""
    from .._io import read_text_file

    result: List[Tuple[str, str]] = []
    if file:
        result += [(line, f"{file}, line {n}") for n, line in enumerate(_lines(read_text_file(file, "--file")), 1)]
    for number, text in enumerate(texts, 1):
        if text == "-":
            result += [(line, f"stdin, line {n}") for n, line in enumerate(_lines(_read_stdin()), 1)]
        else:
            result.append((text, f"argument {number}"))
    result = [(t, where) for t, where in result if t.strip()]
    if not result:
        raise UsageError("no text to explain: give TEXT arguments, '-' for stdin, or --file FILE")
    return result


def read_texts(texts: Sequence[str], file: Optional[str]) -> List[str]:
    return [text for text, _ in read_inputs(texts, file)]


def token_count(tokenizer, text: str, pair: Optional[str] = None) -> int:
    """Word pieces of ``text`` (and ``pair``) with the special tokens, before any truncation."""
    count = len(tokenizer.tokenize(text)) + 2
    return count + len(tokenizer.tokenize(pair)) + 1 if pair is not None else count


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
        from ..attribution.words import merge_word_pieces

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
    from ..attribution.words import merge_word_pieces

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
        from ..views.html_report import MAX_ATTENTION_TOKENS

        shown = min(length, MAX_ATTENTION_TOKENS)  # the HTML shows at most this many; see html_report
        matrix = attentions[attention_layer - 1][index, attention_head - 1, :shown, :shown]
        report["attention"] = {"layer": attention_layer, "head": attention_head,
                               "matrix": [[float(v) for v in row] for row in matrix]}
    return report


def _json_report(report: dict) -> dict:
    out = dict(report)
    out.pop("layer_scores", None)
    out.pop("attention", None)
    return out


# ------------------------------------------------------------------ main
EPILOG = """Texts longer than the model's maximum length are cut (a warning on stderr says how many
tokens were dropped). In the terminal, control characters and bidi controls of the input are shown
as visible escapes such as \\x1b or \\u202e, in every --color mode. --html and --json are
written atomically, only when everything succeeded. Errors are one line on stderr (exit code 2:
bad command line, 1: failure); bert-lrp --debug explain ... shows the traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="bert-lrp explain", description="Explain a BERT classifier's prediction.",
                                     epilog=EPILOG)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain; '-' reads one text per line from stdin")
    parser.add_argument("--model", metavar="DIR", help=f"model folder (default: {DEFAULT_MODEL} in the current folder, "
                        "the source tree or <prefix>/share/bert-lrp)")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from: {registry.describe()} "
                        f"(default {DEFAULT_METHODS})")
    parser.add_argument("--rule", default="attnlrp", choices=LRP_PRESETS,
                        help="LRP preset (default attnlrp)")
    parser.add_argument("--target", help="label (name or id) to explain, or 'all' for every label from one pass; "
                        "default: the predicted one")
    parser.add_argument("--pair", help="second text of a sentence pair (used with every TEXT)")
    parser.add_argument("--file", metavar="FILE", help="read texts from this UTF-8 file, one per line")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report here")
    parser.add_argument("--json", metavar="FILE", help="write scores, prediction and probabilities as JSON here")
    parser.add_argument("--layer", type=int, help="attention map layer for the HTML (1-based, negative counts from "
                        "the last; default: the last)")
    parser.add_argument("--head", type=positive_int, default=1,
                        help="attention map head for the HTML (1-based; default 1)")
    parser.add_argument("--token-index", type=int, metavar="I", help="token classification: explain the word at this "
                        "word-piece position (its first piece is used; negative counts from the end)")
    parser.add_argument("--word", metavar="W", help="token classification: explain this word (its first occurrence)")
    parser.add_argument("--ig-steps", type=positive_int, default=50, help="integrated gradients: interpolation steps "
                        "(default 50)")
    parser.add_argument("--ig-batch", type=positive_int, default=64, help="IG rows per forward pass (bounds memory; "
                        "default 64)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="texts per attribution batch (default 8)")
    sampling = parser.add_argument_group("occlusion, SHAP, LIME and SmoothGrad")
    sampling.add_argument("--rows-per-forward", type=positive_int, default=64,
                          help="perturbed or noisy rows per forward pass (bounds memory; default 64)")
    sampling.add_argument("--seed", type=int, default=0, help="seed of SHAP, LIME and SmoothGrad sampling (default 0)")
    sampling.add_argument("--no-progress", action="store_true",
                          help="no progress bar on stderr (shown only when stderr is a terminal and not --quiet)")
    from ..evaluation.faithfulness import add_perturbation_options

    add_perturbation_options(sampling)
    parser.add_argument("--color", choices=["auto", "truecolor", "256", "none"], default="auto",
                        help="terminal colours (auto: only when stdout is a terminal and NO_COLOR is unset)")
    parser.add_argument("--quiet", action="store_true", help="no terminal output (only --html / --json)")
    data_set = parser.add_argument_group("data sets and long texts")
    data_set.add_argument("--jsonl", metavar="FILE", help="stream one JSON record per input line to FILE, in input "
                          "order, as they are computed (length-bucketed batches; resumable; sharded under torchrun)")
    data_set.add_argument("--resume", action="store_true", help="with --jsonl: skip the lines already in FILE")
    data_set.add_argument("--hidden-relevance", action="store_true",
                          help="with --jsonl: also write relevance per hidden unit (large)")
    data_set.add_argument("--stride", type=positive_int, metavar="N", help="texts longer than the model's positions "
                          "are explained in overlapping windows starting every N pieces (default: half a window)")
    data_set.add_argument("--no-windows", action="store_true",
                          help="cut long texts to the model's positions instead of explaining them in windows")
    return parser


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse ``--html``/``--json`` paths that cannot be written, before any work is done."""
    given = [(option, path) for option, path in (("--html", args.html), ("--json", args.json)) if path]
    for option, path in given:
        if os.path.isdir(path):
            raise UsageError(f"{option} {path}: is a folder, expected a file name")
        parent = os.path.dirname(os.path.abspath(path))
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
        if parent and not os.path.isdir(parent):
            raise UsageError(f"{option} {path}: {parent} is a file, not a folder")
    if len(given) == 2 and os.path.abspath(args.html) == os.path.abspath(args.json):
        raise UsageError(f"--html and --json name the same file {args.html}")


def warn(message: str) -> None:
    print(f"bert-lrp explain: warning: {printable(message)}", file=sys.stderr)


def run(args: argparse.Namespace, directory: Optional[Path] = None) -> List[dict]:
    from ..models.tokenization import TokenizerError

    methods = parse_methods(args.methods)
    directory = resolve_model_dir(args.model) if directory is None else directory
    inputs = read_inputs(args.texts, args.file)  # input errors first: they need no model
    model, tokenizer = load_model(directory)
    token_model = "TokenClassification" in type(model).__name__
    if token_model and args.token_index is None and args.word is None:
        raise UsageError("this is a token-classification model: choose the word with --word W or --token-index I")
    if not token_model and (args.token_index is not None or args.word is not None):
        raise UsageError("--word/--token-index need a token-classification model")
    if args.token_index is not None and args.word is not None:
        raise UsageError("give either --word or --token-index, not both")
    texts = [text for text, _ in inputs]
    label = parse_target(model, args.target)
    layers = model.config.num_hidden_layers
    heads = model.config.num_attention_heads
    want_html = bool(args.html)
    attention_layer = (args.layer if args.layer is not None else layers) if want_html else None
    if want_html:
        if attention_layer < 0:
            attention_layer += layers + 1
        if not 1 <= attention_layer <= layers:
            raise UsageError(f"--layer must be in 1..{layers} (or -{layers}..-1), got {args.layer}")
        if not 1 <= args.head <= heads:
            raise UsageError(f"--head must be in 1..{heads}, got {args.head}")
    limit = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    windowed = [] if token_model or args.no_windows or args.pair else \
        [i for i, text in enumerate(texts) if token_count(tokenizer, text) > limit]
    by_index = {i: windowed_reports(model, tokenizer, texts[i], inputs[i][1], i + 1, methods, label, args)
                for i in windowed}
    rest = [i for i in range(len(texts)) if i not in by_index]
    for first in range(0, len(rest), args.batch_size):
        rows = rest[first:first + args.batch_size]
        chunk = [texts[i] for i in rows]
        try:
            encoding = tokenizer(chunk, [args.pair] * len(chunk) if args.pair else None)
        except TokenizerError as error:
            raise UsageError(str(error)) from None
        dropped = []
        for row, (index, text) in enumerate(zip(rows, chunk)):
            total = token_count(tokenizer, text, args.pair)
            kept = int(encoding["attention_mask"][row].sum())
            dropped.append(max(0, total - kept))
            if all(word is None for word in encoding.word_ids[row]):
                warn(f"input {index + 1} ({inputs[index][1]}): no words to explain (the tokenizer drops "
                     "control characters and most invisible characters)")
            if total > kept:
                warn(f"input {index + 1} ({inputs[index][1]}): {total:,} tokens, cut to {kept:,} "
                     f"({total - kept:,} dropped; the model reads at most {tokenizer.model_max_length:,})")
        target = label
        if token_model:
            target = [(_word_of(encoding, i, args.token_index, args.word), label) for i in range(len(chunk))]
        result = explain(model, encoding, methods, target=target, rule=args.rule, layers=want_html,
                         ig_steps=args.ig_steps, ig_internal_batch_size=args.ig_batch,
                         options=_sampling_options(args, encoding, tokenizer))
        attentions = None
        if want_html:
            with torch.no_grad():
                output = model(**{k: encoding[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                               output_attentions=True)
            attentions = output.attentions
        views = [result.for_label(k) for k in range(result.target.shape[1])] if result.all_labels else [result]
        for i, index in enumerate(rows):
            by_index[index] = []
            for view in views:
                report = build_report(view, i, model, methods, attention_layer, args.head, attentions)
                report["dropped_tokens"] = dropped[i]
                by_index[index].append(report)
    return [report for i in range(len(texts)) for report in by_index[i]]


def windowed_reports(model, tokenizer, text: str, where: str, number: int, methods: Sequence[str], label,
                     args: argparse.Namespace) -> List[dict]:
    """Reports (one per explained label) for a text longer than the model's positions, explained
    in overlapping windows (:mod:`bert_lrp.attribution.windows`)."""
    from ..attribution.windows import explain_windows

    labels = model.config.labels_by_id()
    targets = range(model.config.num_labels) if label == "all" else [label]
    reports = []
    for target in targets:
        result = explain_windows(model, tokenizer, text, methods, target=target, stride=args.stride,
                                 batch_size=args.batch_size, rule=args.rule, ig_steps=args.ig_steps,
                                 ig_internal_batch_size=args.ig_batch)
        encoding = result.encoding
        reports.append({
            "text": text, "pair": None, "tokens": list(encoding.tokens[0]),
            "prediction": labels[int(result.logits.argmax())],
            "probabilities": {labels[i]: float(p) for i, p in enumerate(torch.softmax(result.logits, -1))},
            "logits": {labels[i]: float(v) for i, v in enumerate(result.logits)},
            "target": labels[result.target], "target_logit": result.target_logit, "target_position": None,
            "target_word": None, "methods": list(methods), "conservation": result.conservation,
            "windows": len(result.windows),
            "scores": {m: {"tokens": [float(v) for v in result.scores[m]], "words": result.word_scores(m)}
                       for m in methods}})
    warn(f"input {number} ({where}): {len(reports[0]['tokens']):,} tokens, more than the model's "
         f"{model.config.max_position_embeddings:,} positions: explained in {reports[0]['windows']} overlapping "
         "windows (logits averaged over the windows)")
    return reports


def _sampling_options(args: argparse.Namespace, encoding, tokenizer) -> dict:
    """explain()'s options for occlusion, SHAP, LIME and SmoothGrad, with the batch's word ids."""
    from ..evaluation.faithfulness import perturbation_options

    return {**perturbation_options(args), "rows_per_forward": args.rows_per_forward,
            "progress": not (args.quiet or args.no_progress), "word_ids": encoding.word_ids,
            "mask_token_id": tokenizer.mask_token_id, "unk_token_id": tokenizer.unk_token_id}


def main(argv: Optional[List[str]] = None) -> int:
    """``bert-lrp explain``. Raises on bad input (:mod:`bert_lrp.errors`); :func:`bert_lrp.cli.main`
    turns that into one line on stderr and an exit code."""
    from .._io import atomic_write_texts

    args = build_parser().parse_args(argv)
    check_outputs(args)
    directory = resolve_model_dir(args.model)
    if args.jsonl:
        from .stream import run_jsonl

        if args.html or args.json:
            raise UsageError("--jsonl streams records; give --html/--json in a separate run")
        return run_jsonl(args, directory)
    if args.resume or args.hidden_relevance:
        raise UsageError("--resume and --hidden-relevance go with --jsonl FILE")
    reports = run(args, directory)
    model_name = str(directory)
    outputs = {}
    if args.html:
        from ..views.html_report import render_html

        outputs[args.html] = render_html(reports, model=model_name)
    if args.json:
        payload = {"model": model_name, "rule": args.rule, "examples": [_json_report(r) for r in reports]}
        outputs[args.json] = json.dumps(payload, indent=1) + "\n"
    if not args.quiet:
        mode = colour_mode(sys.stdout, None if args.color == "auto" else args.color)
        print("\n\n".join(render_terminal(r, mode) for r in reports))
    atomic_write_texts(outputs)  # all or nothing, after everything else succeeded
    if not args.quiet:
        for label, path in (("HTML report", args.html), ("JSON", args.json)):
            if path:
                print(f"{label}: {printable(os.path.abspath(path))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ..cli import main as cli_main

    sys.exit(cli_main(["explain", *sys.argv[1:]]))
