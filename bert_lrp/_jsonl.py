"""JSON-lines files that survive interruption: an append-only writer that repairs a torn last
line, a reader that skips one, and the rank/world of a ``torchrun`` job (gloo) with a barrier."""
from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import List, Tuple


class JsonlWriter:
    """Appends one JSON object per line; a torn last line (an interrupted write) is dropped first.
    ``sync=True`` flushes and fsyncs every record; otherwise call :meth:`flush`."""

    def __init__(self, path: Path, sync: bool = True) -> None:
        self.path, self.sync = Path(path), sync
        if self.path.is_file():
            with open(self.path, "rb+") as handle:
                data = handle.read()
                if data and not data.endswith(b"\n"):
                    handle.truncate(data.rfind(b"\n") + 1)
        self.handle = open(self.path, "a", encoding="utf-8")

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
