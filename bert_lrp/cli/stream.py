"""``bert-lrp explain --jsonl OUT``: explain a whole data set, one JSON object per input line.

- Records are written in input order as they are computed: the inputs are taken in chunks of
  ``16 x --batch-size`` lines; inside a chunk they are sorted by length into batches (little
  padding), and the chunk's records are written, flushed and synced in input order.
- ``--resume`` skips the lines already in OUT (a torn last line is dropped) after checking that
  the earlier run had the same settings (``OUT.run.json``); an interrupted run resumed gives the
  same file as an uninterrupted one.
- Under ``torchrun`` every rank explains the lines ``index % world == rank`` into
  ``OUT.part<rank>``; rank 0 then merges the parts into OUT in input order.
- Texts longer than the model's positions are explained in overlapping windows
  (:mod:`bert_lrp.attribution.windows`; ``--stride``), unless ``--no-windows`` cuts them.

A record: ``index``, ``source`` (file and line), ``text`` (``pair``), ``prediction``,
``probabilities``, ``target``, ``target_logit``, ``tokens`` (word pieces), ``words`` (word, start,
end, piece positions), ``scores`` (per method: ``words`` and ``tokens`` scores), ``conservation``,
``windows`` (when windowed); with ``--target all`` ``target`` is ``"all"`` and ``labels`` holds
per label ``target_logit`` and ``scores``; ``--hidden-relevance`` adds ``relevance`` (per method,
per piece, per hidden unit: large).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch

from .._io import atomic_write_text
from .._jsonl import JsonlWriter, barrier, rank_and_world, read_records
from ..attribution.explain import explain
from ..attribution.windows import explain_windows
from ..attribution.words import merge_word_pieces
from ..errors import UsageError

CHUNK_BATCHES = 16  # a chunk of 16 batches is sorted by length; records leave in input order


def _words(encoding, index: int) -> Tuple[List[dict], List[int]]:
    words = merge_word_pieces([0.0] * len(encoding.word_ids[index]), encoding, index)
    return ([{"word": w["word"], "start": w["start"], "end": w["end"], "pieces": w["positions"]} for w in words],
            [w["positions"] for w in words])


def _method_scores(token_scores: torch.Tensor, pieces: List[List[int]], length: int) -> dict:
    values = token_scores[:length].tolist()  # one conversion, not a 0-d tensor per token
    words = [values[p[0]] if len(p) == 1 else float(token_scores[p].sum()) for p in pieces]
    return {"words": [round(v, 7) for v in words], "tokens": [round(v, 7) for v in values]}


def _labels(model) -> Dict[int, str]:
    return model.config.labels_by_id()


def batch_records(result, encoding, model, methods: Sequence[str], hidden: bool) -> List[dict]:
    """One record per example of an Explanation (``target="all"`` included)."""
    labels = _labels(model)
    records = []
    for i in range(len(encoding.word_ids)):
        length = int(result.attention_mask[i].sum())
        words, pieces = _words(encoding, i)
        position = None if result.target_position is None else int(result.target_position[i])
        logits = result.logits[i] if position is None else result.logits[i, position]
        record = {"prediction": labels[int(logits.argmax())],
                  "probabilities": {labels[k]: round(float(p), 7) for k, p in enumerate(torch.softmax(logits.float(), -1))},
                  "tokens": list(encoding.tokens[i][:length]), "words": words}
        if position is not None:
            record["target_position"] = position
        views = ([(labels[k], result.for_label(k)) for k in range(result.target.shape[1])] if result.all_labels
                 else [(None, result)])
        for name, view in views:
            entry = {"target": labels[int(view.target[i])], "target_logit": round(float(view.target_logit[i]), 7),
                     "scores": {m: _method_scores(view.scores[m][i], pieces, length) for m in methods},
                     "conservation": {m: float(v[i]) for m, v in view.conservation.items()}}
            if hidden:
                entry["relevance"] = {m: view.relevance[m][i, :length].tolist() for m in view.relevance if m in methods}
            if name is None:
                record.update(entry)
            else:
                record.setdefault("labels", {})[name] = entry
        if result.all_labels:
            record["target"] = "all"
        records.append(record)
    return records


def windowed_record(result, model, methods: Sequence[str]) -> dict:
    labels = _labels(model)
    words, pieces = _words(result.encoding, 0)
    length = len(result.encoding.word_ids[0])
    return {"prediction": labels[int(result.logits.argmax())],
            "probabilities": {labels[k]: round(float(p), 7) for k, p in enumerate(torch.softmax(result.logits, -1))},
            "tokens": list(result.encoding.tokens[0]), "words": words, "target": labels[result.target],
            "target_logit": round(result.target_logit, 7),
            "scores": {m: _method_scores(result.scores[m], pieces, length) for m in methods},
            "conservation": result.conservation, "windows": len(result.windows)}


def _settings(args: argparse.Namespace, directory: Path, methods: Sequence[str]) -> dict:
    return {"model": str(directory), "methods": list(methods), "rule": args.rule, "target": args.target,
            "pair": args.pair, "hidden_relevance": args.hidden_relevance, "stride": args.stride,
            "windows": not args.no_windows, "word": args.word, "token_index": args.token_index}


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
            changed = sorted(k for k in settings if earlier.get(k) != settings[k])
            raise UsageError(f"--jsonl {out}: the earlier run had other settings ({', '.join(changed)}); "
                             "use another file")
    if rank == 0 and not path.is_file():
        atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def run_jsonl(args: argparse.Namespace, directory: Path) -> int:
    """Explain every input line into ``args.jsonl`` (see the module docstring)."""
    from tqdm import tqdm

    from .explain import (_sampling_options, _word_of, load_model, parse_methods, parse_target, read_inputs,
                          token_count, warn)

    methods = parse_methods(args.methods)
    out = Path(args.jsonl)
    if out.is_dir():
        raise UsageError(f"--jsonl {out}: is a folder, expected a file name")
    inputs = read_inputs(args.texts, args.file)
    model, tokenizer = load_model(directory)
    token_model = type(model).__name__.endswith("TokenClassification")
    if token_model and args.word is None and args.token_index is None:
        raise UsageError("this is a token-classification model: choose the word with --word W or --token-index I")
    label = "all" if args.target == "all" else parse_target(model, args.target)
    rank, world = rank_and_world()
    settings = _settings(args, directory, methods)
    _check_settings(out, settings, args.resume, rank)
    barrier(world)
    target_file = out if world == 1 else out.with_name(f"{out.name}.part{rank}")
    done = {record["index"] for record in read_records(target_file)}
    ours = [i for i in range(len(inputs)) if i % world == rank]
    mine = [i for i in ours if i not in done]
    limit = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    writer = JsonlWriter(target_file, sync=False)
    progress = tqdm(total=len(mine), unit="expl", desc=f"explain rank {rank}" if world > 1 else "explain",
                    file=sys.stderr, disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
    started, written = time.perf_counter(), 0
    options = {"rule": args.rule, "ig_steps": args.ig_steps, "ig_internal_batch_size": args.ig_batch}
    try:
        # chunks and batches depend on the input only (not on what a resumed run skips), so that
        # every record is computed in the same batch, bit for bit, however often the run is resumed
        chunk_size = args.batch_size * CHUNK_BATCHES
        for first in range(0, len(ours), chunk_size):
            chunk = ours[first:first + chunk_size]
            if all(i in done for i in chunk):
                continue
            lengths = {i: token_count(tokenizer, inputs[i][0], args.pair) for i in chunk}
            records: Dict[int, dict] = {}
            short = sorted((i for i in chunk if lengths[i] <= limit or args.no_windows or token_model),
                           key=lambda i: lengths[i])
            for i in chunk:
                if i in short or i in done:
                    if lengths[i] > limit:
                        warn(f"input {i + 1} ({inputs[i][1]}): {lengths[i]:,} tokens, cut to {limit:,}")
                    continue
                windowed = explain_windows(model, tokenizer, inputs[i][0], methods, target=None if label == "all" else label,
                                           stride=args.stride, batch_size=args.batch_size, **options)
                warn(f"input {i + 1} ({inputs[i][1]}): {lengths[i]:,} tokens, explained in "
                     f"{len(windowed.windows)} overlapping windows")
                records[i] = windowed_record(windowed, model, methods)
            for start in range(0, len(short), args.batch_size):
                rows = short[start:start + args.batch_size]
                if all(i in done for i in rows):
                    continue
                texts = [inputs[i][0] for i in rows]
                encoding = tokenizer(texts, [args.pair] * len(rows) if args.pair else None)
                target = label
                if token_model:
                    target = [(_word_of(encoding, r, args.token_index, args.word), label) for r in range(len(rows))]
                result = explain(model, encoding, methods, target=target, **options,
                                 options=_sampling_options(args, encoding, tokenizer))
                for row, record in zip(rows, batch_records(result, encoding, model, methods, args.hidden_relevance)):
                    records[row] = record
            new = [i for i in chunk if i not in done]
            for i in new:  # input order
                writer.write({"index": i, "source": inputs[i][1], "text": inputs[i][0],
                              **({"pair": args.pair} if args.pair else {}), **records[i]})
            writer.flush()
            written += len(new)
            progress.update(len(new))
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
