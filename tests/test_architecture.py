"""The package's layers hold (docs/architecture.md, "Layers"), read from the source, not imported:

    base (_io, _text, _jsonl, errors, data/) <- rules <- models <- attribution
        <- evaluation, training, tf, inspection <- views <- cli

A module imports only modules of its own layer or lower; there is no import circle. Every
``import`` and ``from ... import`` of every module under ``bert_lrp/`` counts, also the ones inside
functions (they run as soon as the function does). ``from P import name`` counts as an import of
the submodule ``P.name`` when there is one, else of the module a package's ``__init__`` took
``name`` from (``from bert_lrp import BertConfig`` imports ``bert_lrp.models.config``), else of
``P``. ``bert_lrp/__init__.py`` and ``bert_lrp/__main__.py`` are exempt from the layer rule (they
are part of the circle check). Run: ``python -m pytest -q tests/test_architecture.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set

PACKAGE = Path(__file__).resolve().parents[1] / "bert_lrp"

# layer rank: a module may import modules of its own rank or lower
LAYERS = ("base", "rules", "models", "attribution", "work", "views", "cli")
SUBPACKAGES = {"data": "base", "rules": "rules", "models": "models", "attribution": "attribution", "evaluation": "work",
               "training": "work", "tf": "work", "inspection": "work", "views": "views", "cli": "cli"}
TOP_LEVEL = {"_io": "base", "_text": "base", "_jsonl": "base", "_peak_memory": "base", "errors": "base", "output": "base",
             "ablate": "work"}  # ablate: the public re-export of models.ablation and evaluation.ablation
EXEMPT = {"bert_lrp", "bert_lrp.__main__"}


class Import(NamedTuple):
    importer: str
    line: int
    target: str   # the module imported
    name: str     # as written: module, or module.name


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> Optional[str]:
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return SUBPACKAGES.get(parts[1]) if parts[1] in SUBPACKAGES else TOP_LEVEL.get(parts[1])


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of ``from <node.module> import ...`` written in ``module``."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _reexports(known: Dict[str, Path]) -> Dict[str, Dict[str, str]]:
    """For each package ``__init__``: name -> the module it imported that name from."""
    table: Dict[str, Dict[str, str]] = {}
    for module, path in known.items():
        if path.name != "__init__.py":
            continue
        names: Dict[str, str] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom):
                base = _base(module, path, node)
                for alias in node.names:
                    names[alias.asname or alias.name] = base
        table[module] = names
    return table


def _resolve(base: str, name: str, known: Dict[str, Path], reexports: Dict[str, Dict[str, str]]) -> str:
    """The module ``from base import name`` imports (see the module docstring)."""
    seen: Set[str] = set()
    while True:
        if f"{base}.{name}" in known:
            return f"{base}.{name}"
        source = reexports.get(base, {}).get(name)
        if source is None or source in seen or not source.startswith("bert_lrp"):
            return base
        seen.add(base)
        base = source


def imports() -> List[Import]:
    """Every import of a ``bert_lrp`` module by a ``bert_lrp`` module."""
    known = modules()
    reexports = _reexports(known)
    found: List[Import] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "bert_lrp" or alias.name.startswith("bert_lrp."):
                        found.append(Import(module, node.lineno, alias.name, alias.name))
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, path, node)
                if base != "bert_lrp" and not base.startswith("bert_lrp."):
                    continue
                for alias in node.names:
                    target = base if alias.name == "*" else _resolve(base, alias.name, known, reexports)
                    found.append(Import(module, node.lineno, target, f"{base}.{alias.name}"))
    return found


def _where(item: Import) -> str:
    return f"{item.importer} (line {item.line}) imports {item.name}"


def upward_imports() -> List[str]:
    offenders = []
    for item in imports():
        if item.importer in EXEMPT or item.target in EXEMPT:
            continue
        mine, theirs = layer_of(item.importer), layer_of(item.target)
        if LAYERS.index(theirs) > LAYERS.index(mine):
            offenders.append(f"{_where(item)}: layer {mine} may not import layer {theirs}")
    return sorted(offenders)


def import_circles() -> List[str]:
    """Every strongly connected group of modules (Tarjan), with the imports that close it."""
    edges: Dict[str, Dict[str, List[Import]]] = {}
    for item in imports():
        if item.target != item.importer:
            edges.setdefault(item.importer, {}).setdefault(item.target, []).append(item)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    groups: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, {}):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(modules()):
        if node not in index:
            visit(node)
    circles = []
    for group in sorted(groups):
        inside = [_where(item) for a in group for b, items in edges.get(a, {}).items() if b in group for item in items]
        circles.append(" <-> ".join(group) + ": " + "; ".join(sorted(inside)))
    return circles


# ------------------------------------------------------------------------------------ tests
def test_every_module_has_a_layer():
    unmapped = [m for m in modules() if m not in EXEMPT and layer_of(m) is None]
    assert not unmapped, f"modules outside the layer map (add them to tests/test_architecture.py): {unmapped}"


def test_no_import_circles():
    circles = import_circles()
    assert not circles, f"{len(circles)} import circle(s):\n" + "\n".join(circles)


def test_no_upward_imports():
    offenders = upward_imports()
    assert not offenders, f"{len(offenders)} upward import(s):\n" + "\n".join(offenders)


def test_commands_live_in_cli():
    """Every ``bert-lrp`` command's front-end is a module of ``bert_lrp/cli`` (read from COMMANDS)."""
    tree = ast.parse((PACKAGE / "cli" / "__init__.py").read_text(encoding="utf-8"))
    table = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in node.targets))
    commands = ast.literal_eval(table)
    elsewhere = {name: entry[0] for name, entry in commands.items() if not entry[0].startswith("bert_lrp.cli.")}
    assert not elsewhere, f"command front-ends outside bert_lrp/cli: {elsewhere}"


def test_nothing_in_the_package_imports_the_public_ablate_module():
    users = [_where(item) for item in imports() if item.target == "bert_lrp.ablate"]
    assert not users, f"bert_lrp.ablate is only a public re-export; import bert_lrp.models.ablation or " \
                      f"bert_lrp.evaluation.ablation instead: {users}"


# Where a tokenizer may be called, and why. Everything that turns a user's text into model
# inputs (explain, --jsonl, evaluate, inspect, the Python API) takes the road; the others are
# not a user's text to explain: the tokenizer itself, training data (labels aligned to pieces),
# and benchmarks that time fixed inputs against peers' tokenizers on purpose.
TOKENIZING_MODULES = {
    "bert_lrp.attribution.road": "the road",
    "bert_lrp.attribution.transformers_inputs": "a transformers tokenizer, called as the road calls a tokenizer",
    "bert_lrp.models.tokenization": "the tokenizer",
    "bert_lrp.training.data": "training examples, tags aligned to word pieces",
    "bert_lrp.evaluation.benchmark": "fixed-length timing inputs",
    "bert_lrp.evaluation.dataset_benchmark": "times file-order against sorted batches, and the peers' own tokenizers",
}


def _tokenizer_calls(path: Path) -> List[int]:
    """Lines that call a tokenizer: ``<name ending in tokenizer>(...)`` or ``.tokenize``/``.encode``/``.encode_batch`` on it."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id.lower().endswith("tokenizer"):
            lines.append(node.lineno)
        elif isinstance(function, ast.Attribute) and function.attr in ("tokenize", "encode", "encode_batch", "__call__"):
            owner = function.value
            if isinstance(owner, ast.Name) and owner.id.lower().endswith("tokenizer"):
                lines.append(node.lineno)
    return lines


def test_only_the_road_tokenises_a_users_text():
    callers = {name: _tokenizer_calls(path) for name, path in modules().items()}
    callers = {name: lines for name, lines in callers.items() if lines}
    stray = [f"{name}:{lines}" for name, lines in callers.items() if name not in TOKENIZING_MODULES]
    assert not stray, f"tokenizer calls outside the road: {stray}"
    assert "bert_lrp.attribution.road" in callers  # the check sees calls at all


# ------------------------------------------------------------------------- function length
LONGEST_FUNCTION = 80  # lines, from ``def`` to the last line of the body (issue 28)


def long_functions(limit: int = LONGEST_FUNCTION) -> List[str]:
    """``module: name (N lines)`` of every function or method under ``bert_lrp/`` longer than ``limit``."""
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{module}: {node.name} ({length} lines)")
    return found


def test_no_function_over_80_lines():
    offenders = long_functions()
    assert not offenders, f"{len(offenders)} function(s) over {LONGEST_FUNCTION} lines:\n" + "\n".join(offenders)


def test_the_length_scan_sees_long_functions():
    """The scan measures: with a lower limit it names functions it knows are longer."""
    assert any(line.startswith("bert_lrp.evaluation.benchmark: ") for line in long_functions(limit=20))
