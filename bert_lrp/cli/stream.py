"""``bert-lrp explain --jsonl OUT``: explain a whole data set, one JSON record per input line.

The records are the road's (:meth:`bert_lrp.attribution.road.TextExplanation.record`, the same as
``--json``'s examples), computed by the same road (:func:`bert_lrp.attribution.road.stream_texts`):

- Records are written in input order as they are computed: the road takes the inputs in chunks
  of ``16 x --batch-size`` lines, sorts each chunk by length into batches, and the chunk's
  records are written, flushed and synced in input order.
- ``--resume`` skips the lines already in OUT (a torn last line is dropped) after checking that
  the earlier run had the same settings (``OUT.run.json``: model, methods, target, every option
  the methods read, windows); an interrupted run resumed gives the same file as an
  uninterrupted one (batches depend on the input only).
- Under ``torchrun`` every rank explains the lines ``index % world == rank`` into
  ``OUT.part<rank>``; rank 0 then merges the parts into OUT in input order.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from .._io import atomic_write_text
from .._jsonl import JsonlWriter, barrier, rank_and_world, read_records
from ..attribution.road import Request, prepare, read_inputs, stream_chunks
from ..errors import UsageError
from ..models.loading import load_model


def _settings(args: argparse.Namespace, directory: Path, request) -> dict:
    return {"model": str(directory), "pair": args.pair, **request.settings()}


def _check_settings(out: Path, settings: dict, resume: bool, rank: int) -> None:
    path = out.with_name(out.name + ".run.json")
    parts = list(out.parent.glob(out.name + ".part*"))
    started = (out.is_file() and out.stat().st_size > 0) or any(p.stat().st_size for p in parts)
    if started and not resume:
        raise UsageError(f"--jsonl {out}: holds records of an earlier run; add --resume to continue it "
                         "(or choose another file)")
    if started and path.is_file():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier != settings:
            changed = sorted(k for k in set(settings) | set(earlier) if earlier.get(k) != settings.get(k))
            raise UsageError(f"--jsonl {out}: the earlier run had other settings ({', '.join(changed)}); "
                             "use another file")
    if rank == 0 and not path.is_file():
        atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def run_jsonl(args: argparse.Namespace, directory: Path, request: Request, warn: Callable[[str], None]) -> int:
    """Explain every input line into ``args.jsonl`` with ``request`` (the road's, from the same
    command line as the terminal path's; see the module docstring)."""
    from tqdm import tqdm

    out = Path(args.jsonl)
    if out.is_dir():
        raise UsageError(f"--jsonl {out}: is a folder, expected a file name")
    inputs = read_inputs(args.texts, args.file, args.pair)
    model, tokenizer = load_model(directory)
    prepare(model, tokenizer, request)  # request errors before anything is written
    rank, world = rank_and_world()
    settings = _settings(args, directory, request)
    _check_settings(out, settings, args.resume, rank)
    barrier(world)
    target_file = out if world == 1 else out.with_name(f"{out.name}.part{rank}")
    done = {record["index"] for record in read_records(target_file)}
    ours = [i for i in range(len(inputs)) if i % world == rank]
    mine = [i for i in ours if i not in done]
    writer = JsonlWriter(target_file, sync=False)
    progress = tqdm(total=len(mine), unit="expl", desc=f"explain rank {rank}" if world > 1 else "explain",
                    file=sys.stderr, disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
    started, written = time.perf_counter(), 0
    try:
        for chunk in stream_chunks(model, tokenizer, inputs, request, skip=done, warn=warn, only=ours):
            for _, explained in chunk:  # input order
                writer.write(explained.record(hidden_relevance=args.hidden_relevance))
            writer.flush()
            written += len(chunk)
            progress.update(len(chunk))
    finally:
        progress.close()
        writer.close()
    barrier(world)
    if world > 1 and rank == 0:
        _merge_parts(out, world, len(inputs))
    barrier(world)
    if not args.quiet and rank == 0:
        seconds = time.perf_counter() - started
        print(f"{written} explanations in {seconds:.1f} s ({written / max(seconds, 1e-9):.1f}/s) -> {out}",
              file=sys.stderr)
    return 0


def _merge_parts(out: Path, world: int, total: int) -> None:
    """Rank 0: the parts' records (and any already in OUT) into OUT, in input order, atomically."""
    records = {r["index"]: r for r in read_records(out)}
    parts = [out.with_name(f"{out.name}.part{rank}") for rank in range(world)]
    for part in parts:
        records.update({r["index"]: r for r in read_records(part)})
    missing = [i for i in range(total) if i not in records]
    if missing:
        raise UsageError(f"--jsonl {out}: {len(missing)} lines have no record after the run (first: {missing[0]})")
    text = "".join(json.dumps(records[i], separators=(",", ":"), ensure_ascii=False) + "\n" for i in range(total))
    atomic_write_text(out, text)
    for part in parts:
        if part.is_file():
            os.unlink(part)
