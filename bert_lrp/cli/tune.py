"""``bert-lrp tune-lrp``: search the LRP rules for the most faithful composite of a model
(:mod:`bert_lrp.evaluation.tuning`) on tuning data, and write it beside the model as
``lrp_composite.json``, which ``--rule tuned`` / ``lrp:tuned`` then use.

Tune on training data, never on the data you report: a composite chosen on the evaluation texts
is fitted to them, and its score there says nothing about new texts. The command refuses
``--data`` when it shares a text with ``--eval-data``, and ``bert-lrp evaluate`` refuses to score
``lrp:tuned`` on any of the texts the composite was tuned on.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path
from typing import List, Optional


from .._jsonl import JsonlWriter, numbered_lines
from ..output import RunRecord, atomic_write_text, check_resume, file_fingerprint, output_lock, write_run
from ..attribution.road import Request, prepare
from ..attribution.targets import task_of
from ..errors import InputFileError, RequestError, UsageError
from ..evaluation import faithfulness as F
from ..evaluation import tuning as T
from ..evaluation.paired import paired
from ..models.loading import load_model, resolve_model_dir
from ..models.tuned import (COMPOSITE_FILE, TunedComposite, normalised_keys, text_key, weights_digest,
                            write_tuned_composite)
from .arguments import DISCARD_ADVICE, add_overwrite, data_command_parser, output_guard, parse_command_line, positive_int

DEFAULT_EXAMPLES = 400
DEFAULT_MIN_WORDS = 8


def build_parser() -> argparse.ArgumentParser:
    parser = data_command_parser(
        "bert-lrp tune-lrp", __doc__.split("\n\n")[0],
        "The search: grids (softmax x value share x layers; gamma x depth x kind of the lower layers; epsilon), "
        "then coordinate descent, on half of the tuning texts; the winner is kept only if it beats AttnLRP "
        "on the other half by more than one standard error (docs/tune_lrp.md). An interrupted search resumes from its log "
        "(OUT.search.jsonl). Errors are one line on stderr (exit code 2: bad command line, 1: failure).", "TRAIN",
        "tuning data: a TSV/CSV/JSONL with a 'sentence' column, e.g. SST-2 train.tsv, or CoNLL "
        "sentences for a token classifier (never the file you evaluate on)")
    parser.add_argument("--eval-data", metavar="FILE",
                        help="the file you will evaluate on: refused if it shares any text with --data")
    parser.add_argument("--drop-shared", action="store_true",
                        help="leave the texts of --data that are also in --eval-data out of the tuning texts, instead "
                             "of refusing (CoNLL-2003's train and validation files share headlines and tables)")
    # the default (None): AttnLRP, the three grids and one full coordinate-descent pass for the model's
    # depth (tuning.default_budget), so that it never cuts the search before every axis has moved once
    parser.add_argument("--budget", type=positive_int, default=None,
                        help="at most this many candidate composites are scored (default: the three grids and "
                             f"one full coordinate-descent pass for the model's depth, {T.default_budget(12)} for 12 "
                             "layers)")
    parser.add_argument("--examples", type=positive_int, default=DEFAULT_EXAMPLES,
                        help=f"tuning texts drawn from --data (default {DEFAULT_EXAMPLES})")
    parser.add_argument("--min-words", type=positive_int, default=DEFAULT_MIN_WORDS,
                        help=f"draw only texts of at least this many words (default {DEFAULT_MIN_WORDS}: sentences, "
                             "not SST-2's short phrases)")
    parser.add_argument("--min-se", type=float, default=1.0,
                        help="a move is kept when its paired ABPC gain exceeds this many paired standard errors "
                             "(default 1)")
    parser.add_argument("--no-confirm", action="store_true",
                        help="write the search's winner without scoring it against AttnLRP on the confirmation half")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample of tuning texts (default 0)")
    parser.add_argument("--out", metavar="FILE",
                        help=f"where the composite goes (default: {COMPOSITE_FILE} in the model folder, where "
                             "--rule tuned finds it)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="texts per attribution batch")
    parser.add_argument("--rows-per-forward", type=positive_int, default=128,
                        help="perturbed rows per forward pass of the metrics")
    parser.add_argument("--threads", type=positive_int, help="torch threads")
    add_overwrite(parser, "an earlier search log with other data, weights or settings, or an --out of another kind")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_command_line(build_parser(), argv)
    _check_arguments(args)
    directory = resolve_model_dir(args.model)
    out = Path(args.out) if args.out else Path(directory) / COMPOSITE_FILE
    _check_out(args, directory, out)
    with output_lock(out):  # one search per output at a time, before anything is read or written
        return _tune(args, directory, out)


def _tune(args: argparse.Namespace, directory: Path, out: Path) -> int:
    model, tokenizer = load_model(directory)
    if task_of(model) not in ("sequence", "token"):
        raise UsageError(f"--model {directory}: tune-lrp needs a sequence or token classifier")
    tokenize = T.text_ids(tokenizer)
    data, indices, token = _tuning_texts(args, directory, tokenize)
    layers = int(model.config.num_hidden_layers)
    if args.budget is None:
        args.budget = T.default_budget(layers)
    # the budget is not a setting: the log only caches scores, so a search resumed with another
    # --budget replays the same path and stops at its own budget. The search's version is: its grids
    # and axes decide the path, so a log of another version is refused rather than mixed into this one
    settings = {"model_sha256": _weights_fingerprint(directory), "weights_sha256": weights_digest(model.state_dict()),
                "data": os.path.basename(args.data), "data_sha256": F.data_fingerprint(args.data),
                "examples": len(indices), "min_words": args.min_words, "seed": args.seed, "min_se": args.min_se,
                "confirm": not args.no_confirm, "batch_size": args.batch_size,
                "search": "stages+coordinate descent v4"}  # v4: attention layers; v3: value share, lower kinds, ...
    request = Request(methods=["lrp"], options={}, batch_size=args.batch_size, targets_per_example=token)
    tuning_set = T.TuningSet(model, tokenizer, prepare(model, tokenizer, request), data, indices, args.batch_size,
                             args.rows_per_forward)
    done = _previous_search(out, settings, args.overwrite, tuning_set.sizes())
    result = _search(args, tuning_set, layers, done, _log_path(out))
    texts = [F.data_text(data[i][0]) for i in indices]
    tuned = TunedComposite(result.chosen.composite("tuned"), frozenset(text_key(t) for t in texts),
                           _record(result, {**settings, "budget": args.budget}), None,
                           frozenset().union(*(normalised_keys(t, tokenize) for t in texts)))
    write_tuned_composite_to(out, tuned)
    print(_summary(result, tuning_set.sizes()))
    print(f"bert-lrp tune-lrp: wrote {out} ({len(result.log)} composites scored, {result.stopped}; "
          f"{_confirmation_line(result)})", file=sys.stderr)
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """The options' values and the data files, before anything is read."""
    if not 0 <= args.min_se <= 10:
        raise UsageError(f"--min-se must be in 0..10, got {args.min_se}")
    if not 0 <= args.seed <= 2 ** 31 - 1:
        raise UsageError(f"--seed must be in 0..2,147,483,647, got {args.seed}")
    for option, path in (("--data", args.data), ("--eval-data", args.eval_data)):
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{option} {path}: {'is a folder, expected a data file' if os.path.isdir(path) else 'no such file'}")


def _log_path(out: Path) -> Path:
    return Path(str(out) + ".search.jsonl")


def _run_path(out: Path) -> Path:
    return Path(str(out) + ".search.json")


def _check_out(args: argparse.Namespace, directory: Path, out: Path) -> None:
    """``--out`` (and its search log) is never an input of the run nor a file of the model folder
    other than its ``lrp_composite.json``, nor an existing file other than JSON (``--overwrite``)."""
    guard = output_guard(args, directory)
    composite = Path(directory) / COMPOSITE_FILE
    for path in (composite, _log_path(composite), _run_path(composite)):  # where --rule tuned finds it, and its log
        guard.allow(path)
    guard.check_file("out", out, "json", args.overwrite)
    guard.check_file("out", _log_path(out))
    guard.check_file("out", _run_path(out))
    if not out.parent.is_dir():
        raise RequestError("out", f"{out}: the folder {out.parent} does not exist")


def _tuning_texts(args: argparse.Namespace, directory: Path, tokenize=None):
    """``(data, indices of the tuning texts, token classifier?)``: ``--data`` read (CoNLL sentences
    for a token classifier), the texts shared with ``--eval-data`` refused or left out (the same
    after normalising spacing, or the same ids to the tokenizer ``tokenize``), the sample drawn."""
    from ..models.loading import architecture_task, read_config
    from ..data import read_conll

    token = architecture_task(read_config(directory)) == "token"
    read = read_conll if token else F.read_data_examples  # CoNLL sentences for a token classifier
    data = [(example.text, example.label if token else None) for example in read(args.data)]
    shared: List[int] = []
    if args.eval_data is not None:
        if F.data_fingerprint(args.data) == F.data_fingerprint(args.eval_data):
            raise UsageError(f"--data {args.data} is the evaluation file (--eval-data, same content): tune on "
                             "training data and evaluate on held-out data")
        held_out = frozenset().union(*(normalised_keys(F.data_text(e.text), tokenize) for e in read(args.eval_data)))
        shared = [i for i, (text, _) in enumerate(data) if normalised_keys(F.data_text(text), tokenize) & held_out]
        if shared and not args.drop_shared:
            raise UsageError(f"--data {args.data}: {len(shared)} of its texts are also in --eval-data "
                             f"{args.eval_data}; tuning on them would score the composite on its own tuning data "
                             "(--drop-shared leaves them out of the tuning texts)")
        if shared:
            print(f"bert-lrp tune-lrp: left out {len(shared)} texts of --data that are also in --eval-data "
                  "(--drop-shared)", file=sys.stderr)
    indices = T.sample_texts(data, args.examples, args.min_words, args.seed, exclude=set(shared))
    if len(indices) < 2:
        raise UsageError(f"--data {args.data}: only {len(indices)} texts with at least {args.min_words} words "
                         "(--min-words)")
    return data, indices, token


def _search(args: argparse.Namespace, tuning_set, layers: int, done: dict, log_path: Path) -> T.SearchResult:
    """The search, each scored candidate appended to the log (and shown on the progress bar)."""
    writer = JsonlWriter(log_path)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=args.budget, desc="tune-lrp", unit="composite", file=sys.stderr, initial=0)
    steps = itertools.count(len(done))  # log lines: the candidates an earlier run scored come first
    best_so_far = max((entry.means["abpc_p"] for entry in done.values()), default=float("-inf"))
    if bar is not None and done:
        bar.update(len(done))

    def scored(entry: T.Scored) -> None:
        nonlocal best_so_far
        step = next(steps)
        writer.write({"index": step, **entry.record(step)})
        best_so_far = max(best_so_far, entry.means["abpc_p"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"best ABPC {best_so_far:.4f}")

    try:
        return T.search(lambda point, part: tuning_set.score(point.composite(), part), layers, args.budget,
                        args.min_se, done, scored, confirm=not args.no_confirm)
    finally:
        writer.close()
        if bar is not None:
            bar.close()


def write_tuned_composite_to(out: Path, tuned: TunedComposite) -> None:
    if out.name == COMPOSITE_FILE:
        write_tuned_composite(out.parent, tuned)
    else:
        atomic_write_text(out, tuned.to_json())


def _weights_fingerprint(directory: Path) -> str:
    from ..models.checkpoint import find_weights

    return file_fingerprint(find_weights(str(directory)))


def _previous_search(out: Path, settings: dict, overwrite: bool, sizes: dict) -> dict:
    """Candidates an earlier, interrupted search with the same data, weights and settings scored
    (by ``(half, key)``), each row checked (:func:`~bert_lrp.evaluation.tuning.check_row`: an
    edited row is refused naming its line); a search with other ones is refused (``--overwrite``:
    discarded)."""
    record = RunRecord({"data": settings["data_sha256"]}, settings["model_sha256"], settings).to_json()
    run_path, log_path = _run_path(out), _log_path(out)
    earlier = check_resume("out", out, run_path, record, overwrite,
                           ignore=("settings.data_sha256", "settings.model_sha256", "settings.weights_sha256"),
                           advice=DISCARD_ADVICE)
    if earlier is None:
        for path in (run_path, log_path):
            if path.is_file():
                path.unlink()
        write_run(run_path, record)
        return {}
    entries = {}
    for line, row in _log_rows(log_path):
        try:
            entry = T.check_row(row, line, str(log_path), sizes)
        except T.SearchLogError as error:
            raise InputFileError(f"{error}; {DISCARD_ADVICE}") from None
        entries[(entry.part, entry.point.key())] = entry
    return entries


def _log_rows(path: Path):
    """``(line number, row)`` of each complete JSON line of the log (a torn last line is skipped:
    the run was killed while writing it); a line that is not a JSON object is refused naming it."""
    for number, row in numbered_lines(path):
        if row is None:
            raise InputFileError(f"{path} line {number}: not a JSON row; {DISCARD_ADVICE}")
        if not isinstance(row, dict):
            raise InputFileError(f"{path} line {number}: not a search log row; {DISCARD_ADVICE}")
        yield number, row


def _record(result: T.SearchResult, settings: dict) -> dict:
    best, start = result.best, result.start
    difference, error = paired(best.abpc, start.abpc)
    return {
        "tuning": {**settings, "objective": "abpc_p (mean over the search half of the tuning texts)",
                   "stopped": result.stopped, "scored": len(result.log), "best": best.point.describe(),
                   "written": result.chosen.describe(), "best_means": best.means, "attnlrp_means": start.means,
                   "abpc_gain_over_attnlrp": difference, "abpc_gain_standard_error": error,
                   "confirmation": result.confirmation},
        "search": [{k: v for k, v in record.items() if k not in ("abpc", "digest")}
                   for record in T.iter_records(result.log)],
    }


def _confirmation_line(result: T.SearchResult) -> str:
    c = result.confirmation
    if not c:
        return "not confirmed (--no-confirm)"
    if "abpc_gain_over_attnlrp" not in c:
        return c.get("note", "")
    verdict = "confirmed" if c["confirmed"] else "NOT confirmed: AttnLRP written"
    return (f"on the confirmation half ({c['examples']} texts) {c['abpc_gain_over_attnlrp']:+.4f} ± "
            f"{c['abpc_gain_standard_error']:.4f} ABPC over AttnLRP: {verdict}")


def _summary(result: T.SearchResult, sizes: dict) -> str:
    lines = ["| step | half | stage | composite (what differs from AttnLRP) | ABPC | comprehensiveness | sufficiency | "
             "relevance / logit | same, biases 0 |", "|---|---|---|---|---|---|---|---|---|"]
    for step, entry in enumerate(result.log):
        mark = " **(best)**" if entry is result.best else ""
        m = entry.means
        conservation = " | ".join(f"{m[k]:.3f}" if k in m else "-" for k in ("conservation", "conservation_no_bias"))
        lines.append(f"| {step} | {entry.part} | {entry.stage} | {entry.point.describe()}{mark} | {m['abpc_p']:.4f} | "
                     f"{m['comprehensiveness_aopc']:.4f} | {m['sufficiency_aopc']:.4f} | {conservation} |")
    difference, error = paired(result.best.abpc, result.start.abpc)
    lines.append("")
    lines.append(f"{sizes[T.SEARCH]} search texts: best minus AttnLRP ABPC {difference:+.4f} (paired standard error "
                 f"{error:.4f}); {_confirmation_line(result)}; written: {result.chosen.describe()}.")
    return "\n".join(lines)

if __name__ == "__main__":
    from ..cli import main as cli_main

    sys.exit(cli_main(["tune-lrp", *sys.argv[1:]]))
