"""What the before/after benchmarks share: an earlier commit checked out beside this one (a
``git worktree`` in a temporary folder, removed afterwards), the short name of this checkout's
commit, and the report written as JSON and a markdown table."""
from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List, Tuple

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def checked_out(revision: str) -> Iterator[Tuple[Path, Path]]:
    """``(before, scratch)``: the earlier ``revision`` checked out in ``before`` and a scratch folder
    beside it; both are removed on exit."""
    with tempfile.TemporaryDirectory() as scratch:
        before = Path(scratch) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), revision],
                       check=True, capture_output=True)
        try:
            yield before, Path(scratch)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def write_report(out: Path, stem: str, report: dict, lines: List[str]) -> None:
    """``out/stem.json`` (the report) and ``out/stem.md`` (``lines``), printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
