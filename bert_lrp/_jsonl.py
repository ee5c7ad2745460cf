"""JSON-lines files that survive interruption: an append-only writer that repairs a torn last
line, a reader that skips one, a scan that finds every record and every damaged line, an
in-order rewrite (:func:`rewrite_in_order`, atomic through :mod:`bert_lrp.output`, whose
lock :func:`exclusive_lock` every writer holds), and the rank/world of a ``torchrun`` job (gloo) with a barrier.

A record is one line holding a JSON object with an integer ``index``; a file of records is in
input order (ascending ``index``, each once). Its last line may be torn (an interrupted write:
no newline at the end); any other line that is not a record is *damaged*.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from .output import OutputBusyError, atomic_write, exclusive_lock, open_for_append, truncate  # noqa: F401  (the lock: the writer's)


class JsonlWriter:
    """Appends one JSON object per line; a torn last line (an interrupted write) is dropped first.
    ``sync=True`` flushes and fsyncs every record; otherwise call :meth:`flush`."""

    def __init__(self, path: Path, sync: bool = True) -> None:
        self.path, self.sync = Path(path), sync
        if self.path.is_file():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                truncate(self.path, data.rfind(b"\n") + 1)
        self.handle = open_for_append(self.path)

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
        if self.sync:
            self.flush()

    def flush(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.flush()
        self.handle.close()


def read_records(path: Path) -> List[dict]:
    """Complete JSON lines of ``path`` that hold an integer ``index`` (a torn last line is skipped)."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    with open(path, encoding="utf-8", errors="replace") as handle:  # a damaged line no longer parses: skipped
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("index"), int):
                records.append(record)
    return records


def numbered_lines(path: Path) -> List[Tuple[int, Optional[Any]]]:
    """``(line number, value)`` of every complete line of ``path`` (a torn last line is skipped:
    the run was killed while writing it); ``value`` is the line's JSON, or None when it is not JSON.
    A missing file has no lines."""
    path = Path(path)
    if not path.is_file():
        return []
    rows: List[Tuple[int, Optional[Any]]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                break
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError:
                rows.append((number, None))
    return rows


def rank_and_world() -> Tuple[int, int]:
    """``(rank, world size)`` under ``torchrun`` (a gloo process group is started), else ``(0, 1)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timedelta(hours=12))
    return rank, world


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


@dataclass
class Scan:
    """What a file of records holds: per record its index, byte offset and length (file order);
    the 1-based numbers of damaged lines; whether the last line is torn."""

    path: Path
    indices: List[int] = field(default_factory=list)
    offsets: List[int] = field(default_factory=list)
    lengths: List[int] = field(default_factory=list)
    damaged: List[int] = field(default_factory=list)
    torn: bool = False
    lines: int = 0

    @property
    def in_order(self) -> bool:
        """Every index greater than the one before (input order, no repeats), no damaged line."""
        return not self.damaged and all(b > a for a, b in zip(self.indices, self.indices[1:]))


def scan_records(path: Path) -> Scan:
    """Read ``path`` line by line (memory: three integers per record) and classify every line."""
    scan = Scan(Path(path))
    if not scan.path.is_file():
        return scan
    offset = 0
    with open(scan.path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            scan.lines = number
            if not line.endswith(b"\n"):
                scan.torn = True  # an interrupted write: the last line only
                break
            index = _record_index(line)
            if index is None:
                scan.damaged.append(number)
            else:
                scan.indices.append(index)
                scan.offsets.append(offset)
                scan.lengths.append(len(line))
            offset += len(line)
    return scan


def _record_index(line: bytes):
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(record, dict) and isinstance(record.get("index"), int) and not isinstance(record["index"], bool):
        return record["index"]
    return None


def rewrite_in_order(out: Path, scans: Sequence[Scan]) -> List[int]:
    """Write the records of ``scans`` (``out``'s own scan among them, if it has one) to ``out`` in
    ascending index, each index once (the first one found), dropping damaged and torn lines;
    atomically (a temporary file in the same folder, synced, then renamed). Returns the indices
    written. Memory: the scans' offsets, not the records."""
    entries = sorted((index, k, offset, length) for k, scan in enumerate(scans)
                     for index, offset, length in zip(scan.indices, scan.offsets, scan.lengths))
    handles = {k: open(scan.path, "rb") for k, scan in enumerate(scans) if scan.indices}
    written: List[int] = []

    def write(temporary: str) -> None:
        with open(temporary, "r+b") as target:
            for index, k, offset, length in entries:
                if written and written[-1] == index:
                    continue
                handles[k].seek(offset)
                target.write(handles[k].read(length))
                written.append(index)
            target.flush()
            os.fsync(target.fileno())

    try:
        atomic_write(out, write)
    finally:
        for handle in handles.values():
            handle.close()
    return written
