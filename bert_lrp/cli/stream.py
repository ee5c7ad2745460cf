"""``bert-lrp explain --jsonl OUT``: explain a whole data set, one JSON record per input line,
so that the file on disk is either right or the command says why not.

The records are the road's (:meth:`bert_lrp.attribution.road.TextExplanation.record`, the same as
``--json``'s examples), computed by the same road (:func:`bert_lrp.attribution.road.stream_chunks`):

- **In input order**: the road takes the inputs in chunks of ``16 x --batch-size`` lines, sorts
  each chunk by length into batches; the chunk's records are written, flushed and synced in input
  order. Record ``i`` is on line ``i + 1`` of a finished file.
- **Settings first**: ``OUT.run.json`` is written atomically before the first record. It holds
  everything that changes a record: the input (its file, size in bytes, number of texts and a
  SHA-256 of the texts as read), the model (its folder and a SHA-256 of its weights, config and
  vocabulary: :func:`bert_lrp.models.fingerprint.model_digest`), the methods, the target and
  every option the methods read (defaults filled in), windows. A run that dies before its first
  record leaves no records, and the next run replaces its settings.
- **Resume** (``--resume``) continues only a run with the same settings and refuses any
  difference, naming it (the model is compared by content, so a moved model folder resumes; the
  input by its file name as given, since every record names it in ``source``, and by content). A file with records but without its settings, or that is not
  this command's JSONL (no record in it), is never appended to. A torn last line (an interrupted
  write) is dropped; a damaged line elsewhere is reported, its input explained again and the file
  rewritten in input order (atomically). The result equals an uninterrupted run's.
- **One writer**: a lock on ``OUT.lock`` (one byte per ``torchrun`` rank) refuses a second
  process writing the same output; the system releases it when a process ends, however it ends.
- **Go on**: a text that cannot be explained becomes a record with an ``error`` field saying why
  (and a warning); the run goes on.
- ``--jsonl`` naming an input of the run or a file of the model folder (symlinks and hard links
  included), or an existing file that is not JSON lines (without ``--overwrite``), is refused
  (:class:`bert_lrp.output.Guard`); ``--overwrite`` also discards an earlier run in the file.
- Under ``torchrun`` every rank explains the lines ``index % world == rank`` into ``OUT.part<rank>``;
  rank 0 then merges them into OUT in input order. Parts left by an interrupted job are folded
  into OUT when the run resumes, with any number of processes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .._jsonl import JsonlWriter, Scan, barrier, rank_and_world, rewrite_in_order, scan_records
from ..attribution.records import FailedText
from ..attribution.road import Request, TextInput, stream_chunks
from ..data import read_inputs
from ..errors import InputFileError, RequestError, UsageError
from ..models.fingerprint import model_digest
from ..models.loading import load_model
from ..output import Guard, differences, exclusive_lock, lock_path, read_run, truncate, write_run
from .planning import plan_for_command

FORMAT = "bert-lrp explain --jsonl"
FORMAT_VERSION = 2
BY_CONTENT = {"model.path"}  # recorded, not compared: the weights' digest is (records name the input file, not the model's)
PART = re.compile(r"\.part(\d+)$")


def input_identity(file: Optional[str], inputs: Sequence[TextInput]) -> Dict[str, Any]:
    """The input as read: its file (or ``arguments``), size in bytes, number of texts and a
    SHA-256 over the texts and their pair texts, in order."""
    digest = hashlib.sha256()
    for item in inputs:
        digest.update(json.dumps([item.text, item.pair], ensure_ascii=False).encode("utf-8") + b"\n")
    return {"file": file or "arguments", "bytes": os.stat(file).st_size if file else None, "texts": len(inputs),
            "sha256": digest.hexdigest()}


def run_settings(args: argparse.Namespace, directory: Path, request: Request, inputs: Sequence[TextInput],
                 model, tokenizer) -> Dict[str, Any]:
    """Everything that changes a record of this run (written to ``OUT.run.json``)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "input": input_identity(args.file, inputs),
            "model": {"path": str(directory), "sha256": model_digest(model, tokenizer)}, "pair": args.pair,
            **request.settings()}


def _parts(out: Path) -> List[Path]:
    return sorted((p for p in out.parent.glob(out.name + ".part*") if PART.search(p.name)), key=lambda p: p.name)


def _read_settings(path: Path) -> Optional[Dict[str, Any]]:
    return read_run(path, "the records next to it cannot be checked: choose another --jsonl file")


def start_run(out: Path, settings: Dict[str, Any], resume: bool, total: int, warn: Callable[[str], None],
              overwrite: bool = False) -> None:
    """Rank 0, holding the lock: check that ``out`` may be written with ``settings`` (see the
    module docstring), fold parts and damaged lines into an in-order ``out``, or write the
    settings of a new run. Raises a one-line error naming the file, the line or the setting."""
    run_json = out.with_name(out.name + ".run.json")
    parts = _parts(out)
    scans = [scan_records(out)] + [scan_records(part) for part in parts]
    started = any(scan.lines for scan in scans) and not overwrite  # --overwrite: the earlier run is discarded
    earlier = _read_settings(run_json) if started else None
    records = sum(len(scan.indices) for scan in scans)
    if started and not records and not any(scan.damaged for scan in scans) and _ours(earlier):
        started = False  # only a torn first record: the earlier run wrote nothing whole
    if not started:
        write_run(run_json, settings)  # before the first record
        for part in parts:
            part.unlink()
        if out.is_file():
            truncate(out, 0)
        return
    if not _ours(earlier) or not records:
        what = ("it holds no record of it" if not records and earlier is not None else
                f"there is no {run_json.name} next to it" if earlier is None else f"{run_json.name} is not its settings")
        raise InputFileError(f"--jsonl {out}: not the output of {FORMAT} ({what}); it is left as it is: choose "
                             "another file")
    if not resume:
        raise UsageError(f"--jsonl {out}: holds {records:,} records of an earlier run; add --resume to continue it "
                         "(or choose another file)")
    changed = differences(earlier, settings, ignore=BY_CONTENT)
    if changed:
        raise RequestError("jsonl", f"{out}: the earlier run had other settings: {', '.join(changed)}; "
                                    "use another file (or the earlier settings, or --overwrite to discard it)")
    for scan in scans:
        for index, offset in zip(scan.indices, scan.offsets):
            if not 0 <= index < total:
                line = _line_of(scan.path, offset)
                raise InputFileError(f"{scan.path}, line {line}: record of input {index}, but there are {total:,} "
                                     "inputs; the file is not this run's: choose another --jsonl file")
    if parts or not scans[0].in_order:
        for scan in scans:
            for line in scan.damaged:
                warn(f"--jsonl {scan.path}, line {line}: damaged (not a JSON record); its input is explained again "
                     "and written in its place")
        rewrite_in_order(out, scans)
        for part in parts:
            part.unlink()


def _ours(settings: Optional[Dict[str, Any]]) -> bool:
    return settings is not None and settings.get("format") == FORMAT


def _line_of(path: Path, offset: int) -> int:
    with open(path, "rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def run_jsonl(args: argparse.Namespace, directory: Path, request: Request, warn: Callable[[str], None],
              guard: Optional[Guard] = None, describe: Optional[Callable[[BaseException], str]] = None) -> int:
    """Explain every input line into ``args.jsonl`` with ``request`` (the road's, from the same
    command line as the terminal path's; see the module docstring). ``guard``: the files of the
    run that ``--jsonl`` (and its settings file) must not be; ``describe``: how a record's
    ``error`` words why its text was not explained (the command's flags for request fields)."""
    from tqdm import tqdm

    out = Path(args.jsonl)
    guard = guard or Guard()
    overwrite = getattr(args, "overwrite", False)
    guard.check_file("jsonl", out)  # its kind: start_run appends only to this command's own run file
    guard.check_file("jsonl", out.with_name(out.name + ".run.json"))  # its settings file: never an input either
    inputs = read_inputs(args.texts, args.file, args.pair)
    model, tokenizer = load_model(directory)
    plan = plan_for_command(model, tokenizer, request)  # request errors before anything is written
    rank, world = rank_and_world()
    settings = run_settings(args, directory, plan, inputs, model, tokenizer)
    with exclusive_lock(lock_path(out), rank):
        if rank == 0:
            start_run(out, settings, args.resume, len(inputs), warn, overwrite)
        barrier(world)
        present = scan_records(out)
        done = set(present.indices)
        ours = [i for i in range(len(inputs)) if i % world == rank]
        mine = [i for i in ours if i not in done]
        in_place = world == 1 and (not mine or not done or min(mine) > max(done))
        target_file = out if in_place else out.with_name(f"{out.name}.part{rank}")
        writer = JsonlWriter(target_file, sync=False)
        progress = tqdm(total=len(mine), unit="expl", desc=f"explain rank {rank}" if world > 1 else "explain",
                        file=sys.stderr, disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
        started, written, failed = time.perf_counter(), 0, 0
        try:
            for chunk in stream_chunks(model, tokenizer, inputs, plan, skip=done, warn=warn, only=ours, go_on=True,
                                       describe=describe):
                for _, explained in chunk:  # input order
                    writer.write(explained.record(hidden_relevance=args.hidden_relevance))
                    failed += isinstance(explained, FailedText)
                writer.flush()
                written += len(chunk)
                progress.update(len(chunk))
        finally:
            progress.close()
            writer.close()
        barrier(world)
        if rank == 0:
            _finish(out, present, len(inputs), in_place)
        barrier(world)
    if failed:
        warn(f"{failed} of {written} inputs could not be explained; their records hold \"error\" instead of scores")
    if not args.quiet and rank == 0:
        seconds = time.perf_counter() - started
        print(f"{written} explanations in {seconds:.1f} s ({written / max(seconds, 1e-9):.1f}/s) -> {out}",
              file=sys.stderr)
    return 0


def _finish(out: Path, present: Scan, total: int, in_place: bool) -> None:
    """Rank 0: the parts (if any) merged into ``out`` in input order; every input has its record."""
    if in_place:
        return
    parts = _parts(out)
    written = rewrite_in_order(out, [scan_records(out)] + [scan_records(part) for part in parts])
    for part in parts:
        part.unlink()
    if len(written) != total:
        missing = sorted(set(range(total)) - set(written))
        raise InputFileError(f"--jsonl {out}: {len(missing):,} inputs have no record after the run (first: input "
                             f"{missing[0] + 1}); run again with --resume")
