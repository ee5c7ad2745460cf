"""``bert-lrp evaluate``: faithfulness of attribution methods on a labelled data set
(:mod:`bert_lrp.evaluation.faithfulness`: word deletion, MoRF/LeRF, ABPC, ERASER AOPC).

The methods' options are the registry's, as in ``bert-lrp explain`` (generated flags); texts are
tokenised and batched by the one road (:mod:`bert_lrp.attribution.road`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional


from .._jsonl import rank_and_world
from ..attribution import registry
from ..attribution.road import Request, plan_request
from ..errors import UsageError
from ..evaluation import faithfulness as F
from ..evaluation import variants
from ..models.loading import load_model, resolve_model_dir
from ..output import RunRecord, check_resume, file_fingerprint, output_lock
from .arguments import (DISCARD_ADVICE, add_method_options, add_overwrite, data_command_parser, method_options,
                        output_guard, parse_command_line, positive_int)

DEFAULT_METHODS = "lrp,gi,gs,lat,rollout,ig"
# evaluate's own defaults: IG with 20 steps (the published tables), more perturbed rows per pass
DEFAULTS = {"ig_steps": 20, "rows_per_forward": 128}


def build_parser() -> argparse.ArgumentParser:
    parser = data_command_parser(
        "bert-lrp evaluate", F.__doc__.split("\n\n")[0],
        "Errors in the data file name the file and the line. Nothing is created in --out before the "
        "model and the data have been read and checked. Errors are one line on stderr (exit code 2: "
        "bad command line, 1: failure); bert-lrp --debug evaluate ... shows the traceback.", "FILE",
        "UTF-8 TSV (or .csv/.jsonl) with a header naming a 'sentence' column and optionally a "
        "'label' column (a label name of the model or its id), e.g. SST-2 dev.tsv; for a token "
        "classifier, CoNLL-2003 sentences (word first, tag last): each sentence's first word "
        "predicted as an entity is explained")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated, from: {registry.describe()}; a random baseline is always added; a perturbation method with another baseline: METHOD[baseline=mask|pad|unk|remove], e.g. shap[baseline=mask]")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the first N examples")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (resumed if it holds an earlier run with the same settings)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="examples per attribution batch")
    parser.add_argument("--batch-tokens", type=positive_int, metavar="N", help="also at most N padded tokens per batch")
    parser.add_argument("--ranking", choices=["signed", "abs"], default="signed",
                        help="rank tokens by signed score (default) or by its absolute value")
    add_method_options(parser, DEFAULTS, title="method options (from the method registry; --seed also seeds the "
                       "random baseline, --rows-per-forward also bounds the metrics' forward passes)")
    parser.add_argument("--threads", type=positive_int, help="torch threads per process")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--no-matched-baselines", action="store_true",
                        help="score SHAP, LIME and occlusion only with their own baseline (by default each is also "
                             "scored as METHOD[baseline=mask], the deletion ABPC and AOPC use, side by side)")
    add_overwrite(parser, "an earlier run in --out with other data, weights or settings")
    parser.add_argument("--skip-layers", metavar="LIST",
                        help="evaluate the model without these encoder layers, 1-based (e.g. 6 or 1,2; "
                             "bert_lrp.ablate.skip_layers); results.md's accuracy line names them")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """``bert-lrp evaluate``. Raises on bad input (:mod:`bert_lrp.errors`); :func:`bert_lrp.cli.main`
    turns that into one line on stderr and an exit code."""
    args = parse_command_line(build_parser(), argv)
    given = [m.strip() for m in args.methods.split(",") if m.strip()]
    names = [m for m in given if m != F.RANDOM]
    if given and not names:
        raise UsageError(f"--methods {args.methods}: {F.RANDOM} is the baseline every evaluation includes; name at "
                         "least one method to compare with it, e.g. --methods lrp,gi")
    try:
        methods = _method_specs(names)
    except ValueError as error:
        raise UsageError(f"--methods: {error}") from None
    if not args.no_matched_baselines:
        methods = variants.with_matched_baselines(methods, method_options(args))
    directory = resolve_model_dir(args.model)
    if os.path.isdir(args.data):
        raise UsageError(f"--data {args.data}: is a folder, expected a data file")
    if not os.path.exists(args.data):
        raise UsageError(f"--data {args.data}: no such file")
    F.check_out_folder(Path(args.out))
    output_guard(args, directory).check_files_in("out", args.out, F.OUTPUT_FILES)
    rank, world = rank_and_world()
    try:
        return _evaluate(args, methods + [F.RANDOM], directory, rank, world)
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _evaluate(args, methods: List[str], directory: Path, rank: int, world: int) -> int:
    """Read and check the data and the model, then create ``--out``; a folder this run created is
    removed again if it is still empty when the run fails."""
    from ..output import make_folders, remove_empty_folders
    from ..models.ablation import parse_layers, skip_layers

    from ..models.loading import architecture_task, read_config
    from ..data import read_conll

    token = architecture_task(read_config(directory)) == "token"
    if token:  # CoNLL sentences (words, tags); structure errors first: no model needed
        conll = read_conll(args.data, "data")
        data = [(example.text, example.label) for example in conll[:args.limit]]
        model, tokenizer = load_model(directory)
    else:
        data_examples = F.read_data_examples(args.data, args.limit)
        model, tokenizer = load_model(directory)
        labels = F.data_labels(data_examples, model.config.label2id)
        data = [(example.text, label) for example, label in zip(data_examples, labels)]
    refuse_tuning_texts(model, methods, method_options(args), data, args.data, tokenizer)
    skip = parse_layers(args.skip_layers, "skip_layers", model.config.num_hidden_layers) if args.skip_layers else []
    model_methods = list(dict.fromkeys(variants.parse(m)[0] for m in methods if m != F.RANDOM))
    request = plan_request(model, tokenizer, Request(methods=model_methods, options=method_options(args),
                                                     batch_size=args.batch_size, batch_tokens=args.batch_tokens,
                                                     targets_per_example=token))
    out = Path(args.out)
    place = F.RunPlace(out, run_record(args, directory, methods, request, skip), rank, world)
    created = make_folders(out)
    try:
        with output_lock(out, rank), skip_layers(model, skip, "skip_layers"):
            check_resume("out", args.out, out / F.RUN_FILE, place.record, args.overwrite,
                         ignore=("settings.data_sha256",), advice=DISCARD_ADVICE)
            return F.run_evaluation(model, tokenizer, data, methods, request, place,
                                    F.Scoring(args.ranking, args.seed, args.rows_per_forward),
                                    progress=not args.no_progress, limit=args.limit)
    except BaseException:
        if created:
            F.remove_unstarted_run(out)
        remove_empty_folders(created)
        raise


def _method_specs(names: List[str]) -> List[str]:
    """Canonical method names, variants (``shap[baseline=mask]``) kept with their base name made
    canonical; repeats dropped, order kept."""
    out: List[str] = []
    for name in names:
        base, own = variants.parse(name)
        [canonical] = registry.canonical([base])
        spec = variants.spec(canonical, next(iter(own.values()))) if own else canonical
        if own and canonical not in variants.BASELINE_OPTIONS:
            raise ValueError(f"{name!r}: only {', '.join(variants.BASELINE_OPTIONS)} take a baseline")
        if spec not in out:
            out.append(spec)
    return out


def run_record(args, directory: Path, methods: List[str], request: Request, skip: List[int]) -> dict:
    """What an evaluation in ``--out`` records and resumes only if unchanged: the data's and the
    weights' fingerprints and every setting that changes a result."""
    from ..models.checkpoint import find_weights

    used = request.settings()["options"] if any(m != F.RANDOM for m in methods) else {}
    settings = {"model": str(directory.resolve()), "data": os.path.abspath(args.data),
                "data_sha256": F.data_fingerprint(args.data), "methods": methods, "ranking": args.ranking,
                "seed": args.seed, "rows_per_forward": args.rows_per_forward, **used}
    if skip:  # only when given, so that the settings of earlier runs still match
        settings["skip_layers"] = skip
    return RunRecord({"data": settings["data_sha256"]}, file_fingerprint(find_weights(str(directory))),
                     settings).to_json()


def refuse_tuning_texts(model, methods: List[str], options: dict, data, path: str, tokenizer=None) -> None:
    """Scoring the tuned composite on the texts it was tuned on would measure its fit to them, not
    its faithfulness: refuse (naming the file and how many texts) when any text of ``data`` was a
    tuning text of the model's ``lrp_composite.json``, the same text or the same after normalising
    its spacing or to the tokenizer (``FILM .`` is ``film.`` to an uncased one). A composite that
    cannot explain this model (damaged, other weights) is refused here too, before ``--out``."""
    from ..evaluation.tuning import text_ids
    from ..models.tuned import TunedCompositeError

    tuned = getattr(model, "tuned_composite", None)
    uses_tuned = "lrp:tuned" in methods or ("lrp" in methods and options.get("rule") == "tuned")
    if tuned is None or not uses_tuned:
        return
    try:
        tuned.usable(model)
    except TunedCompositeError as error:
        raise UsageError(f"lrp:tuned: {error}") from None
    tokenize = text_ids(tokenizer) if tokenizer is not None else None
    shared = tuned.overlap((F.data_text(text) for text, _ in data), tokenize)
    if shared:
        raise UsageError(f"--data {path}: {shared} of its texts were used to tune {tuned.path or 'the tuned composite'} "
                         "(compared after normalising spacing and by the tokenizer's ids); evaluate the tuned "
                         "composite on held-out data")

if __name__ == "__main__":
    from ..cli import main as cli_main

    sys.exit(cli_main(["evaluate", *sys.argv[1:]]))
