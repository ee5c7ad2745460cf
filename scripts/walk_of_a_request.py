"""Count the walk of one request through the package, as it runs: for each module of
``attribution/``, ``cli/``, ``views/`` and ``evaluation/``, the calls into it from another module
(entries) and the entries into a module the request had already left (re-entries: it climbed back
into a room it had finished with). Parser building and model loading are left out.

    python scripts/walk_of_a_request.py            # this checkout; PYTHONPATH=OTHER for another one

Three requests with the shipped model: ``bert-lrp explain "a fine film"`` (terminal),
the same with ``--json``, and the explorer's ``POST /api/explain`` (after a warm-up call).
Prints one JSON object: per request, total entries and re-entries and the modules most entered.
(docs/architecture.md, "The walk of one request".)
"""
from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import bert_lrp
from bert_lrp import cli

ROOT = os.path.dirname(bert_lrp.__file__) + os.sep
MODEL = Path(__file__).resolve().parents[1] / "checkpoints" / "minilm-sst2"
WATCHED = ("attribution/", "cli/", "views/", "evaluation/")
LEFT_OUT = {"build_parser", "load_model", "resolve_model_dir", "add_method_options"}


class Walk:
    """A ``sys.setprofile`` hook counting entries and re-entries per watched module."""

    def __init__(self) -> None:
        self.entries: collections.Counter = collections.Counter()
        self.reentries: collections.Counter = collections.Counter()
        self.stack: list = []
        self.left: set = set()
        self.skipping: list = []

    @staticmethod
    def module_of(frame) -> str | None:
        name = frame.f_code.co_filename
        if not name.startswith(ROOT):
            return None
        relative = name[len(ROOT):]
        return relative if relative.startswith(WATCHED) else None

    def caller_module(self, frame) -> str | None:
        while frame is not None:
            module = self.module_of(frame)
            if module:
                return module
            frame = frame.f_back
        return None

    def __call__(self, frame, event, _arg) -> None:
        if self.skipping:
            if event == "return" and frame is self.skipping[-1]:
                self.skipping.pop()
            return
        module = self.module_of(frame)
        if module is None:
            return
        if event == "call":
            if frame.f_code.co_name in LEFT_OUT:
                self.skipping.append(frame)
                return
            if self.caller_module(frame.f_back) != module:
                self.entries[module] += 1
                if module in self.left and module not in self.stack:
                    self.reentries[module] += 1
            self.stack.append(module)
        elif event == "return":
            if self.stack:
                self.stack.pop()
            if module not in self.stack:
                self.left.add(module)

    def summary(self) -> dict:
        return {"entries": sum(self.entries.values()), "reentries": sum(self.reentries.values()),
                "most_entered": dict(self.entries.most_common(6))}


def walk_command(args: list) -> dict:
    walk = Walk()
    sys.setprofile(walk)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli.main(args)
    finally:
        sys.setprofile(None)
    return walk.summary()


def walk_explorer() -> dict:
    from bert_lrp.models.loading import load_model
    from bert_lrp.views.explorer.explorer import Explorer

    explorer = Explorer([(MODEL, *load_model(MODEL))])
    try:
        explorer.explain({"text": "a fine film"})  # warm: the first call loads lazily
        walk = Walk()
        explorer.on_worker(lambda: sys.setprofile(walk))
        sys.setprofile(walk)
        explorer.explain({"text": "a fine film"})
        sys.setprofile(None)
        explorer.on_worker(lambda: sys.setprofile(None))
    finally:
        explorer.close()
    return walk.summary()


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        report = {
            "package": ROOT,
            "terminal": walk_command(["explain", "--model", str(MODEL), "a fine film"]),
            "json": walk_command(["explain", "--model", str(MODEL), "--quiet", "--json",
                                  str(Path(scratch) / "out.json"), "a fine film"]),
            "explorer": walk_explorer(),
        }
    report["package"] = "this checkout" if ROOT.startswith(str(Path(__file__).resolve().parents[1])) else "other"
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
