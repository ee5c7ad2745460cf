"""The one writer (bert_lrp.output, docs/outputs.md), as every command sees it.

- No writer replaces an input of its run or a file of the model folder: not directly, not through
  a symlink, not through a hard link. The refusal is one line naming the option and the path,
  exit code 2, and the file keeps its bytes and its mtime.
- No writer replaces an existing file of another kind without --overwrite.
- A second run on the same output refuses at once while the first holds its lock.
- A resumed run with another input, other weights or other settings refuses, naming what changed.
- Nothing in the package opens a file for writing outside the writer.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import torch

from bert_lrp import cli
from bert_lrp.errors import RequestError
from bert_lrp.output import Guard, RunRecord, check_resume, file_kind, lock_path, write_run

from test_explain_cli import make_model_dir

PACKAGE = Path(__file__).resolve().parents[1] / "bert_lrp"
MODEL_FILES = ("config.json", "model.safetensors", "vocab.txt")
SENTENCES = ["a good film", "the bad movie", "a truly good film", "the movie is bad"]


# ------------------------------------------------------------------ the run's files
@pytest.fixture
def files(tmp_path: Path) -> Dict[str, Path]:
    """A tiny model folder and the inputs the commands read: texts, a labelled TSV, a second TSV."""
    model = make_model_dir(tmp_path / "model")
    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    data = tmp_path / "data.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES)),
                    encoding="utf-8")
    held_out = tmp_path / "held_out.tsv"
    held_out.write_text("sentence\tlabel\nan awful film indeed\t0\n", encoding="utf-8")
    return {"model": model, "texts": texts, "data": data, "held_out": held_out}


def snapshot(paths: List[Path]) -> Dict[Path, Tuple[bytes, int]]:
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in paths}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def pointing_at(target: Path, how: str, tmp_path: Path) -> Path:
    """``target`` itself, or a new symlink or hard link to it."""
    if how == "directly":
        return target
    link = tmp_path / f"link-{how}-{target.name}"
    (os.symlink if how == "symlink" else os.link)(target, link)
    return link


# command line of each file writer, given the run's files and the output path
FILE_WRITERS: Dict[str, Tuple[str, Callable[[Dict[str, Path], str], List[str]]]] = {
    "explain --json": ("--json", lambda f, out: ["explain", "--model", str(f["model"]), "--file", str(f["texts"]),
                                                  "--quiet", "--json", out]),
    "explain --html": ("--html", lambda f, out: ["explain", "--model", str(f["model"]), "--file", str(f["texts"]),
                                                  "--quiet", "--html", out]),
    "explain --jsonl": ("--jsonl", lambda f, out: ["explain", "--model", str(f["model"]), "--file", str(f["texts"]),
                                                    "--quiet", "--jsonl", out]),
    "tune-lrp --out": ("--out", lambda f, out: ["tune-lrp", "--model", str(f["model"]), "--data", str(f["data"]),
                                                 "--eval-data", str(f["held_out"]), "--no-progress", "--out", out]),
}
FILE_INPUTS = {"explain --json": ("texts",), "explain --html": ("texts",), "explain --jsonl": ("texts",),
               "tune-lrp --out": ("data", "held_out")}
FILE_CASES = [(writer, target, how) for writer in FILE_WRITERS
              for target in (*FILE_INPUTS[writer], *MODEL_FILES) for how in ("directly", "symlink", "hardlink")]


@pytest.mark.parametrize("writer, target, how", FILE_CASES)
def test_no_file_writer_replaces_an_input_or_a_model_file(files, tmp_path, capsys, writer, target, how):
    flag, command = FILE_WRITERS[writer]
    victim = files[target] if target in files else files["model"] / target
    out = pointing_at(victim, how, tmp_path)
    kept = snapshot([victim, *(files["model"] / name for name in MODEL_FILES)])
    assert cli.main(command(files, str(out))) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"bert-lrp {command(files, '')[0]}: error: {flag} {out}: is "), line
    assert str(victim) in line or out == victim  # both paths are named
    assert snapshot(list(kept)) == kept


# command line of each folder writer, given the run's files and the output folder
FOLDER_WRITERS: Dict[str, Callable[[Dict[str, Path], str], List[str]]] = {
    "evaluate --out": lambda f, out: ["evaluate", "--model", str(f["model"]), "--data", str(f["data"]),
                                      "--methods", "gs", "--no-progress", "--out", out],
    "train --output-dir": lambda f, out: ["train", "--model", str(f["model"]), "--train-file", str(f["data"]),
                                          "--no-progress", "--output-dir", out],
    "benchmark --out": lambda f, out: ["benchmark", "--model", str(f["model"]), "--data", str(f["texts"]),
                                       "--quick", "--no-memory", "--out", out],
    "convert --out": lambda f, out: ["convert", "--tf-checkpoint", str(f["model"] / "bert_model.ckpt"),
                                     "--config", str(f["model"] / "config.json"), "--out", out, "--overwrite"],
}
FOLDER_FLAGS = {"evaluate --out": "--out", "train --output-dir": "--output-dir", "benchmark --out": "--out",
                "convert --out": "--out"}


@pytest.mark.parametrize("how", ["directly", "symlink"])
@pytest.mark.parametrize("writer", FOLDER_WRITERS)
def test_no_folder_writer_writes_into_the_model_folder(files, tmp_path, capsys, writer, how):
    """convert reads its checkpoint from the folder it would replace; the others would write a
    config.json, weights or results beside (or over) the model's."""
    (files["model"] / "bert_model.ckpt.index").write_bytes(b"not read: refused before")
    out = pointing_at(files["model"], how, tmp_path)
    kept = snapshot(sorted(p for p in files["model"].iterdir() if p.is_file()))
    command = FOLDER_WRITERS[writer](files, str(out))
    assert cli.main(command) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"bert-lrp {command[0]}: error: {FOLDER_FLAGS[writer]} {out}: "), line
    assert snapshot(list(kept)) == kept
    assert sorted(p.name for p in files["model"].iterdir()) == sorted(p.name for p in kept)


@pytest.mark.parametrize("how", ["directly", "symlink", "hardlink"])
@pytest.mark.parametrize("writer", ["evaluate --out", "benchmark --out", "convert --out"])
def test_no_folder_writer_takes_an_input_file_for_its_folder(files, tmp_path, capsys, writer, how):
    victim = files["texts"] if writer == "benchmark --out" else files["data"]
    if writer == "convert --out":
        victim = files["model"] / "config.json"
    out = pointing_at(victim, how, tmp_path)
    kept = snapshot([victim])
    command = FOLDER_WRITERS[writer](files, str(out))
    assert cli.main(command) == 2
    assert one_error_line(capsys).startswith(f"bert-lrp {command[0]}: error: {FOLDER_FLAGS[writer]} {out}: ")
    assert snapshot([victim]) == kept


def test_files_a_folder_writer_writes_are_checked_by_identity(tmp_path):
    """An input that sits in the output folder under a name the run writes there is refused; an
    input under another name is left alone (the run does not touch it)."""
    data = tmp_path / "out" / "results.json"
    data.parent.mkdir()
    data.write_text("{}\n")
    guard = Guard.for_run([("the input file", data)])
    with pytest.raises(RequestError, match=r"results.json: is the input file of this run") as refused:
        guard.check_files_in("out", tmp_path / "out", ("run.json", "results.json"))
    assert refused.value.field == "out"
    guard.check_files_in("out", tmp_path / "out", ("run.json", "results.md"))


def test_the_model_folders_model_files_are_protected_and_a_runs_own_files_there_are_not(files):
    model = files["model"]
    (model / "explained.jsonl").write_text('{"index":0}\n')
    guard = Guard.for_run(model_dir=model)
    for name in MODEL_FILES:
        with pytest.raises(RequestError, match=f"is a file of the model folder {model}"):
            guard.check_file("jsonl", model / name)
    guard.check_file("jsonl", model / "explained.jsonl")  # an earlier run's output placed there: resumable


def test_train_refuses_an_output_dir_where_its_export_would_replace_the_train_file(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    os.link(files["data"], out / "vocab.txt")  # the export writes a vocab.txt there
    kept = snapshot([files["data"]])
    assert cli.main(FOLDER_WRITERS["train --output-dir"](files, str(out))) == 2
    assert "--output-dir" in one_error_line(capsys)
    assert snapshot([files["data"]]) == kept


# ------------------------------------------------------------------ kinds
@pytest.mark.parametrize("option, existing, kind", [
    ("--json", "model.safetensors", "safetensors"),
    ("--json", "page.html", "html"),
    ("--json", "run.jsonl", "jsonl"),
    ("--html", "report.json", "json"),
    ("--html", "notes.txt", "text"),
])
def test_an_existing_file_of_another_kind_is_replaced_only_with_overwrite(files, tmp_path, capsys, option, existing,
                                                                          kind):
    contents = {"model.safetensors": (files["model"] / "model.safetensors").read_bytes(),
                "page.html": b"<!doctype html><p>mine</p>\n", "run.jsonl": b'{"index":0}\n{"index":1}\n',
                "report.json": b'{\n "mine": 1\n}\n', "notes.txt": b"my notes\n"}
    out = tmp_path / "elsewhere" / existing
    out.parent.mkdir()
    out.write_bytes(contents[existing])
    assert file_kind(out) == kind
    command = ["explain", "--model", str(files["model"]), "--quiet", option, str(out), "a good film"]
    assert cli.main(command) == 2
    line = one_error_line(capsys)
    assert f"{option} {out}: exists and holds {kind}" in line and "--overwrite" in line
    assert out.read_bytes() == contents[existing]
    assert cli.main(command + ["--overwrite"]) == 0
    assert out.read_bytes() != contents[existing]


def test_a_file_of_the_same_kind_is_replaced(files, tmp_path):
    out = tmp_path / "out.json"
    out.write_text('{\n "an earlier": "result"\n}\n')
    assert cli.main(["explain", "--model", str(files["model"]), "--quiet", "--json", str(out), "a good film"]) == 0
    assert '"an earlier"' not in out.read_text()


# ------------------------------------------------------------------ one writer per output
@pytest.fixture
def held_lock():
    """``held_lock(output)``: another process holds ``output``'s lock until the test ends."""
    holders = []

    def hold(output: Path) -> None:
        code = ("import sys; from bert_lrp.output import output_lock\n"
                f"with output_lock({str(output)!r}):\n    print('held', flush=True); sys.stdin.read()")
        holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, cwd=str(PACKAGE.parent))
        holders.append(holder)
        assert holder.stdout.readline().strip() == "held"

    yield hold
    for holder in holders:
        holder.stdin.close()
        holder.wait(timeout=30)


RESUMABLE = {
    "explain --jsonl": lambda f, out: ["explain", "--model", str(f["model"]), "--file", str(f["texts"]), "--quiet",
                                       "--jsonl", out],
    "evaluate": FOLDER_WRITERS["evaluate --out"],
    "tune-lrp": lambda f, out: ["tune-lrp", "--model", str(f["model"]), "--data", str(f["data"]), "--examples", "4",
                                "--min-words", "1", "--budget", "1", "--no-progress", "--out", out],
    "train": FOLDER_WRITERS["train --output-dir"],
}
LOCKED = {**RESUMABLE, "explain --json": FILE_WRITERS["explain --json"][1], "convert": FOLDER_WRITERS["convert --out"]}
OUTPUT_NAME = {"explain --jsonl": "out.jsonl", "evaluate": "evaluation", "tune-lrp": "composite.json",
               "train": "trained", "explain --json": "out.json", "convert": "converted"}


@pytest.mark.parametrize("command", LOCKED)
def test_a_second_run_on_the_same_output_refuses_at_once(files, tmp_path, capsys, held_lock, command):
    out = tmp_path / OUTPUT_NAME[command]
    held_lock(out)
    assert cli.main(LOCKED[command](files, str(out))) == 1
    line = one_error_line(capsys)
    assert str(lock_path(out)) in line and "another bert-lrp process is writing this output" in line
    assert not out.exists()


# ------------------------------------------------------------------ resume by fingerprints
def evaluate(files: Dict[str, Path], out: Path, *extra: str) -> int:
    return cli.main([*FOLDER_WRITERS["evaluate --out"](files, str(out)), *extra])


def test_evaluate_resumes_only_the_same_data_weights_and_settings(files, tmp_path, capsys):
    out = tmp_path / "evaluation"
    assert evaluate(files, out) == 0
    capsys.readouterr()
    assert evaluate(files, out) == 0  # the same run: resumed (nothing left to do)
    capsys.readouterr()
    results = (out / "results.json").read_bytes()

    assert evaluate(files, out, "--seed", "7") == 2
    assert "holds a run with other settings.seed (0 -> 7)" in one_error_line(capsys)

    with open(files["data"], "a", encoding="utf-8") as handle:
        handle.write("one more good film\t1\n")
    assert evaluate(files, out) == 2
    assert "holds a run with other inputs.data (" in one_error_line(capsys)
    files["data"].write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES)),
                             encoding="utf-8")

    make_model_dir(files["model"], seed=1)  # other weights, same place
    assert evaluate(files, out) == 2
    assert "holds a run with other weights (" in one_error_line(capsys)
    assert (out / "results.json").read_bytes() == results  # nothing of the earlier run was touched
    assert evaluate(files, out, "--overwrite") == 0


def test_train_resumes_only_the_same_data(tmp_path):
    from test_training import make_trainer, write_sentiment

    make_trainer(tmp_path, epochs=1, stop_after_steps=2).train()
    trainer = make_trainer(tmp_path, epochs=1, resume="auto")  # writes train.tsv again, from seed 1
    write_sentiment(tmp_path / "train.tsv", 48, seed=5)  # other texts by the time the run resumes
    with pytest.raises(RequestError, match=r"holds a run with other inputs.train_file \(") as refused:
        trainer.train()
    assert refused.value.field == "resume"


def test_a_run_record_names_every_difference(tmp_path):
    run_file = tmp_path / "run.json"
    earlier = RunRecord({"data": "aaaa"}, "w1", {"seed": 0, "options": {"ig_steps": 20}})
    write_run(run_file, earlier.to_json())
    now = RunRecord({"data": "bbbb"}, "w2", {"seed": 0, "options": {"ig_steps": 8}})
    with pytest.raises(RequestError) as refused:
        check_resume("out", tmp_path, run_file, now.to_json(), overwrite=False)
    message = refused.value.message
    assert 'inputs.data ("aaaa" -> "bbbb")' in message and 'weights ("w1" -> "w2")' in message
    assert "settings.options.ig_steps (20 -> 8)" in message and "settings.seed" not in message
    assert check_resume("out", tmp_path, run_file, earlier.to_json(), overwrite=False) == earlier.to_json()
    assert check_resume("out", tmp_path, run_file, now.to_json(), overwrite=True) is None


# ------------------------------------------------------------------ the CLI shows fields as flags
def test_a_request_field_is_shown_as_the_commands_flag():
    from bert_lrp.cli import flag_of, parsed_or_none, request_line
    from bert_lrp.cli.explain import build_parser

    parser = build_parser()
    assert flag_of(parser, "json") == "--json"
    assert flag_of(parser, "batch_size") == "--batch-size"
    assert flag_of(parser, "options.ig_steps") == "--ig-steps"
    assert flag_of(parser, "no_such_field") is None
    given = parsed_or_none(parser, ["--json", "in.txt", "--word", "paris", "a text"])
    assert request_line(parser, RequestError("json", "in.txt: is the input file"), given) == \
        "--json in.txt: is the input file"
    assert request_line(parser, RequestError("word", "'paris' is not a word"), given) == "--word 'paris' is not a word"
    assert request_line(parser, RequestError("stride", "must be positive"), given) == "--stride: must be positive"
    assert request_line(parser, RequestError("no_such_field", "x"), given) == "no_such_field: x"


# ------------------------------------------------------------------ nothing writes outside the writer
WRITER_MODULES = {"output.py", "_jsonl.py"}
# (module, what it calls) that may stay, and why
EXCEPTIONS = {
    ("_peak_memory.py", "open-w"): "/proc/self/clear_refs: a kernel control file (resets the peak-memory "
                                   "counter), not an output",
    ("evaluation/peers/lxt_runner.py", "open-w"): "a peer's runner in its own process (LXT's environment), which "
                                                  "imports bert_lrp only after LXT patched torch; its caller reads "
                                                  "the file it names",
    ("evaluation/peers/lxt_runner.py", "json.dump"): "the same runner's result file",
}
# the writer's functions that take a callback writing a temporary file: what it calls is atomic
ATOMIC_CALLBACKS = {"atomic_write", "atomic_write_many"}


def _inside_callbacks(tree: ast.AST) -> set:
    """The nodes inside the arguments of a call to one of :data:`ATOMIC_CALLBACKS`."""
    inside = set()
    for node in ast.walk(tree):
        name = getattr(getattr(node, "func", None), "id", None) or getattr(getattr(node, "func", None), "attr", None)
        if isinstance(node, ast.Call) and name in ATOMIC_CALLBACKS:
            for argument in node.args[1:]:
                inside.update(id(inner) for inner in ast.walk(argument))
    return inside


def writes_in(tree: ast.AST) -> List[Tuple[int, str]]:
    """``(line, what)`` for every call that writes a file: open() in a writing mode, write_text,
    write_bytes, torch.save, save_file, json.dump, savefig, os.truncate, .save(path); except in
    the callback given to the writer's ``atomic_write`` (it writes the writer's temporary)."""
    found = []
    atomic = _inside_callbacks(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in atomic:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        owner = getattr(node.func, "value", None)
        owner = getattr(owner, "id", "") if owner is not None else ""
        if name == "open" and owner in ("", "io", "builtins"):
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                 None)
            text = mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "r"
            if set(text) & set("wax+"):
                found.append((node.lineno, "open-w"))
        elif name in ("write_text", "write_bytes", "save_file", "savefig", "fdopen") or (name, owner) == ("truncate", "os"):
            found.append((node.lineno, name))
        elif name == "save" and owner == "torch":
            found.append((node.lineno, "torch.save"))
        elif name == "dump" and owner == "json":
            found.append((node.lineno, "json.dump"))
        elif name == "save" and owner != "torch":
            found.append((node.lineno, ".save"))
    return found


def test_nothing_in_the_package_writes_a_file_outside_the_writer():
    offenders, excepted = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module in WRITER_MODULES:
            continue
        for line, what in writes_in(ast.parse(path.read_text(encoding="utf-8"))):
            if (module, what) in EXCEPTIONS:
                excepted.add((module, what))
            else:
                offenders.append(f"{module}:{line}: {what}")
    assert not offenders, "write through bert_lrp.output instead: " + ", ".join(offenders)
    assert excepted == set(EXCEPTIONS), f"exceptions no longer needed: {set(EXCEPTIONS) - excepted}"


def test_the_scan_finds_each_kind_of_write():
    source = ("open(p, 'w')\nopen(p, mode='ab')\nopen(p)\nPath(p).write_text('x')\ntorch.save(x, p)\n"
              "save_file(x, p)\njson.dump(x, h)\nfig.savefig(p)\nos.truncate(p, 0)\n"
              "atomic_write(p, lambda temporary: save_file(x, temporary))\n")
    assert [what for _, what in writes_in(ast.parse(source))] == \
        ["open-w", "open-w", "write_text", "torch.save", "save_file", "json.dump", "savefig", "truncate"]
