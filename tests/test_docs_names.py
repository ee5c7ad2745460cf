"""Every module, file and dotted name the README and the docs mention exists.

A reader follows ``bert_lrp/attribution/road.py``, ``models/loading.py``, ``benchmarks/results/vs_lxt.md`` or
``bert_lrp.training.metrics.accuracy`` from the prose to the code; a rename that leaves the prose behind sends
them nowhere. This test reads README.md, benchmarks/README.md and docs/*.md and checks:

- file paths (``bert_lrp/...``, ``tests/...``, ``benchmarks/...``, ``scripts/...``, ``docs/...``,
  ``checkpoints/...``, with ``{a,b}`` alternatives and ``*`` patterns), relative to the repository;
- module paths written relative to the package (``models/loading.py``, ``cli/stream.py``, ``data/``), which must
  exist under ``bert_lrp/``;
- dotted names ``bert_lrp.x.y.z``: the longest importable module prefix, then attributes.

Paths inside ``<...>`` (placeholders), URLs and paths of other projects (``code/model/BERT.py``) are not ours
and are left alone.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bert_lrp"
DOCUMENTS = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")])
TOP_FOLDERS = ("bert_lrp", "tests", "benchmarks", "scripts", "docs", "checkpoints")
PACKAGE_FOLDERS = tuple(sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")))

PATH = re.compile(r"(?<![\w./<-])((?:%s)/[\w./{},*-]*)" % "|".join(TOP_FOLDERS + PACKAGE_FOLDERS))
DOTTED = re.compile(r"(?<![\w./])(bert_lrp(?:\.\w+)+)")
BARE_MODULE = re.compile(r"`(\w+\.py)`")  # a module named alone: it must be somewhere in the repository
OTHER_PROJECTS = {"BERT.py", "lrp.py", "rules.py", "metrics.py", "modeling.py", "run_classifier.py"}


def mentions(pattern: re.Pattern) -> Iterator[Tuple[str, int, str]]:
    for document in DOCUMENTS:
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            line = re.sub(r"<[^>\s]*>", "", re.sub(r"https?://\S+", "", line))  # placeholders, URLs
            for match in pattern.finditer(line):
                yield f"{document.relative_to(ROOT)}:{number}", number, match.group(1)


def expand(path: str) -> List[str]:
    """``a/{b,c}.md`` -> ``a/b.md``, ``a/c.md``."""
    found = re.search(r"\{([^{}]*)\}", path)
    if not found:
        return [path]
    return [item for choice in found.group(1).split(",")
            for item in expand(path[:found.start()] + choice + path[found.end():])]


PLACEHOLDER = re.compile(r"(^|[/_-])[A-Z]+([/_.-]|$)")  # checkpoints/step-N/, OUTPUT_DIR/...


def ours(path: str) -> bool:
    """A path into the repository (not a placeholder; relative to the package: a module or a folder)."""
    if PLACEHOLDER.search(path):
        return False
    if path.split("/")[0] in TOP_FOLDERS:
        return True
    return path.rstrip(".,").endswith((".py", "/"))  # `models/bert-base-uncased` is a user's output folder


def exists(path: str) -> bool:
    path = path.rstrip(".,").rstrip("/")
    root = ROOT if path.split("/")[0] in TOP_FOLDERS else PACKAGE
    if "*" in path:
        return bool(list(root.glob(path)))
    # a TensorFlow checkpoint is named by its prefix (bert_model.ckpt -> .index, .data-00000-of-00001)
    return (root / path).exists() or bool(list((root / path).parent.glob((root / path).name + ".*")))


def missing_paths() -> List[str]:
    missing = []
    for where, _, path in mentions(PATH):
        if not ours(path):
            continue
        for item in expand(path):
            if not exists(item):
                missing.append(f"{where}: {item}")
    return missing


def test_every_module_named_alone_exists_somewhere():
    files = {path.name for path in ROOT.rglob("*.py") if ".git" not in path.parts}
    assert [f"{where}: {name}" for where, _, name in mentions(BARE_MODULE)
            if name not in files and name not in OTHER_PROJECTS] == []


def resolves(dotted: str) -> bool:
    parts = dotted.rstrip(".").split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(value, attribute):
                return False
            value = getattr(value, attribute)
        return True
    return False


def test_the_documents_are_found():
    assert ROOT / "README.md" in DOCUMENTS and len(DOCUMENTS) > 5


def test_every_file_and_module_path_in_the_docs_exists():
    assert missing_paths() == []


def test_every_dotted_name_in_the_docs_resolves():
    assert [f"{where}: {name}" for where, _, name in mentions(DOTTED) if not resolves(name)] == []


@pytest.mark.parametrize("text, found", [
    ("see `bert_lrp/attribution/road.py`.", ["bert_lrp/attribution/road.py"]),
    ("`models/loading.py` loads", ["models/loading.py"]),
    ("results in `benchmarks/results/vs_lxt.{md,png}`", ["benchmarks/results/vs_lxt.{md,png}"]),
    ("`<prefix>/share/bert-lrp/checkpoints/minilm-sst2`", []),
])
def test_the_path_pattern_finds_what_a_reader_would_follow(text, found):
    text = re.sub(r"<[^>\s]*>", "", text)
    assert [m.group(1).rstrip(".") for m in PATH.finditer(text)] == found


def test_a_renamed_module_would_be_caught():
    assert not exists("attribution/no_such_module.py")
    assert not resolves("bert_lrp.attribution.road.no_such_function")
    assert resolves("bert_lrp.attribution.road") and exists("models/loading.py")
