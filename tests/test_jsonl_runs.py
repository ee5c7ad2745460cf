"""``explain --jsonl`` runs cannot mix or lose records: the file on disk is either right or the
command says why not (bert_lrp/cli/stream.py).

* The settings (``OUT.run.json``) record the input and the model by content and every option
  that changes a record; ``--resume`` refuses any difference, naming it.
* A run that died before its first record leaves no records: its stale settings are replaced.
* A second writer is refused while the first holds the lock.
* An output that is not this command's JSONL is never appended to; ``--jsonl`` naming the input is
  refused, the input left byte-identical.
* A damaged middle line is reported by line number and its record recomputed in place: the file
  equals an uninterrupted run's, byte for byte. Parts left by an interrupted ``torchrun`` job are
  folded in by a one-process resume.
* A text that cannot be explained becomes a record saying why; the run goes on.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from bert_lrp import cli
from bert_lrp._jsonl import exclusive_lock

from test_dataset_explain import _texts  # noqa: E402  (tests/ is on sys.path under pytest)
from test_explain_cli import make_model_dir  # noqa: E402

METHODS = "lrp,gi"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("jsonl") / "model")


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\n".join(_texts(20)) + "\n", encoding="utf-8")
    return path


def run(model, data, out, *extra, methods=METHODS):
    return cli.main(["explain", "--model", str(model), "--file", str(data), "--jsonl", str(out), "--methods", methods,
                     "--batch-size", "4", "--quiet", *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bert-lrp explain: error: "), err
    return lines[0]


@pytest.fixture
def reference(model_dir, data, tmp_path):
    """The file of an uninterrupted run."""
    out = tmp_path / "reference" / "out.jsonl"
    out.parent.mkdir()
    assert run(model_dir, data, out) == 0
    return out


def test_resume_with_another_input_file_is_refused_naming_the_input(model_dir, data, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run(model_dir, data, out) == 0
    before = out.read_bytes()
    other = tmp_path / "b.txt"
    other.write_text("\n".join(_texts(20, seed=1)) + "\n", encoding="utf-8")
    assert run(model_dir, other, out, "--resume") == 2
    assert "input.sha256" in one_error_line(capsys)
    shorter = tmp_path / "c.txt"
    shorter.write_text("\n".join(_texts(20)[:10]) + "\n", encoding="utf-8")
    assert run(model_dir, shorter, out, "--resume") == 2
    assert "input.texts (20 -> 10)" in one_error_line(capsys)
    assert out.read_bytes() == before


def test_the_same_input_under_another_name_is_refused_since_records_name_their_file(model_dir, data, tmp_path,
                                                                                       capsys):
    out = tmp_path / "out.jsonl"
    assert run(model_dir, data, out) == 0
    out.write_bytes(b"".join(out.read_bytes().splitlines(keepends=True)[:7]))
    copy = tmp_path / "copy" / "a.txt"
    copy.parent.mkdir()
    shutil.copy(data, copy)
    assert run(model_dir, copy, out, "--resume") == 2
    assert "input.file" in one_error_line(capsys)


def test_a_moved_model_folder_resumes(model_dir, data, tmp_path, reference):
    moved = tmp_path / "moved"
    shutil.copytree(model_dir, moved)
    out = tmp_path / "out.jsonl"
    assert run(model_dir, data, out) == 0
    out.write_bytes(b"".join(out.read_bytes().splitlines(keepends=True)[:7]))
    assert run(moved, data, out, "--resume") == 0
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("option, changed", [
    ("--ig-steps", "options.ig_steps (20 -> 8)"),
    ("--seed", "options.seed (0 -> 3)"),
    ("--smoothgrad-sigma", "options.smoothgrad_sigma (0.5 -> 0.9)"),
])
def test_resume_with_another_option_is_refused_naming_it(model_dir, data, tmp_path, capsys, option, changed):
    out = tmp_path / "out.jsonl"
    common = ["--smoothgrad-samples", "2", "--ig-steps", "20"]
    assert run(model_dir, data, out, *common, methods="ig,sg") == 0
    value = {"--ig-steps": "8", "--seed": "3", "--smoothgrad-sigma": "0.9"}[option]
    assert run(model_dir, data, out, "--resume", *common, option, value, methods="ig,sg") == 2
    assert changed in one_error_line(capsys)


def test_resume_with_weights_changed_in_place_is_refused(model_dir, data, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    out = tmp_path / "out.jsonl"
    assert run(model, data, out) == 0
    make_model_dir(model, seed=5)  # other weights, same folder, same config
    assert run(model, data, out, "--resume") == 2
    assert "other settings: model.sha256" in one_error_line(capsys)


def test_records_without_their_settings_file_are_never_appended_to(model_dir, data, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run(model_dir, data, out) == 0
    out.write_bytes(b"".join(out.read_bytes().splitlines(keepends=True)[:5]))
    before = out.read_bytes()
    (tmp_path / "out.jsonl.run.json").unlink()
    assert run(model_dir, data, out, "--resume") == 1
    assert "no out.jsonl.run.json next to it" in one_error_line(capsys)
    assert out.read_bytes() == before


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_a_damaged_settings_file_is_one_line_naming_it(model_dir, data, tmp_path, capsys, content):
    out = tmp_path / "out.jsonl"
    assert run(model_dir, data, out) == 0
    (tmp_path / "out.jsonl.run.json").write_bytes(content)
    assert run(model_dir, data, out, "--resume") == 1
    assert "out.jsonl.run.json" in one_error_line(capsys)


def test_stale_settings_of_a_run_that_wrote_no_record_are_replaced(model_dir, data, tmp_path, reference):
    out = tmp_path / "out.jsonl"
    # an earlier run with other settings died before its first record: settings, an empty file
    assert run(model_dir, data, out, methods="gs") == 0
    out.write_bytes(b"")
    assert run(model_dir, data, out) == 0  # its true settings, not the stale ones
    assert out.read_bytes() == reference.read_bytes()
    assert json.loads((tmp_path / "out.jsonl.run.json").read_text())["methods"] == ["lrp", "gradient_x_input"]
    # died while writing its first record: a torn line only
    out.write_bytes(b'{"index":0,"sou')
    assert run(model_dir, data, out, "--resume") == 0
    assert out.read_bytes() == reference.read_bytes()


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(model_dir, data, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    lock = tmp_path / "out.jsonl.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from bert_lrp._jsonl import exclusive_lock\n"
        f"with exclusive_lock(Path({str(lock)!r})):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run(model_dir, data, out) == 1
        assert "another bert-lrp process is writing this output" in one_error_line(capsys)
        assert not out.exists() and not (tmp_path / "out.jsonl.run.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(model_dir, data, out) == 0  # released when the holder ended, however it ended
    assert not lock.exists()  # and removed after the run


def test_the_lock_is_per_writer_slot_and_released_on_exit(tmp_path):
    lock = tmp_path / "x.lock"
    with exclusive_lock(lock, 0):
        code = ("import sys; from pathlib import Path; from bert_lrp._jsonl import exclusive_lock, OutputBusyError\n"
                f"slot = int(sys.argv[1])\ntry:\n    with exclusive_lock(Path({str(lock)!r}), slot): print('ok')\n"
                "except OutputBusyError: print('busy')")
        same = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True).stdout.strip()
        other = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True).stdout.strip()
    after = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True).stdout.strip()
    assert (same, other, after) == ("busy", "ok", "ok")


def test_jsonl_naming_the_input_file_is_refused_and_the_input_kept(model_dir, data, tmp_path, capsys):
    before = data.read_bytes()
    for extra in ([], ["--resume"]):
        assert run(model_dir, data, data, *extra) == 2
        assert "is the input file" in one_error_line(capsys)
        assert data.read_bytes() == before


def test_a_file_that_is_not_this_commands_output_is_never_appended_to(model_dir, data, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_bytes(b"my notes\nsecond line without newline")
    before = out.read_bytes()
    for extra in ([], ["--resume"]):
        assert run(model_dir, data, out, *extra) == 1
        assert "not the output of bert-lrp explain --jsonl" in one_error_line(capsys)
        assert out.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("notes")) == ["notes.txt"]
    # even next to a settings file of a real run
    real = tmp_path / "real.jsonl"
    assert run(model_dir, data, real) == 0
    shutil.copy(tmp_path / "real.jsonl.run.json", tmp_path / "notes.txt.run.json")
    assert run(model_dir, data, out, "--resume") == 1
    assert "holds no record of it" in one_error_line(capsys)
    assert out.read_bytes() == before


def test_a_damaged_middle_line_is_recomputed_in_place(model_dir, data, tmp_path, reference, capsys):
    out = tmp_path / "out.jsonl"
    shutil.copy(reference, out)
    shutil.copy(reference.with_name("out.jsonl.run.json"), tmp_path / "out.jsonl.run.json")
    lines = out.read_bytes().splitlines(keepends=True)
    lines[6] = lines[6][:30] + b"\x00garbage\n"
    out.write_bytes(b"".join(lines[:15]))  # also interrupted after 15 lines
    assert run(model_dir, data, out, "--resume") == 0
    assert "line 7: damaged" in capsys.readouterr().err
    assert out.read_bytes() == reference.read_bytes()


def test_parts_of_an_interrupted_torchrun_job_are_folded_in_by_a_one_process_resume(model_dir, data, tmp_path,
                                                                                      reference):
    out = tmp_path / "out.jsonl"
    shutil.copy(reference.with_name("out.jsonl.run.json"), tmp_path / "out.jsonl.run.json")
    lines = reference.read_bytes().splitlines(keepends=True)
    (tmp_path / "out.jsonl.part0").write_bytes(b"".join(lines[0:12:2]))   # rank 0 got to input 11
    (tmp_path / "out.jsonl.part1").write_bytes(b"".join(lines[1:6:2]) + lines[7][:20])  # rank 1 died mid-line
    assert run(model_dir, data, out, "--resume") == 0
    assert out.read_bytes() == reference.read_bytes()
    assert not list(tmp_path.glob("out.jsonl.part*"))


def test_a_text_that_cannot_be_explained_becomes_a_record_saying_why(tmp_path, capsys):
    model = make_model_dir(tmp_path / "ner", token=True)
    data = tmp_path / "texts.txt"
    data.write_text("the film is in paris\na bad movie\nparis is great\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli.main(["explain", "--model", str(model), "--file", str(data), "--word", "paris", "--jsonl", str(out),
                     "--methods", "lrp", "--quiet"]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert "scores" in records[0] and "scores" in records[2]
    assert set(records[1]) == {"index", "source", "text", "error"}
    assert "--word 'paris' is not a word of the text" in records[1]["error"]
    err = capsys.readouterr().err
    assert "input 2" in err and "1 of 3 inputs could not be explained" in err


def test_a_line_of_control_characters_does_not_stop_perturbation_methods(model_dir, tmp_path):
    data = tmp_path / "texts.txt"
    data.write_bytes(b"a good film\n\x01\x02\x03\x7f\x1b\nthe movie is bad\n")
    out = tmp_path / "out.jsonl"
    assert run(model_dir, data, out, "--shap-samples", "16", "--lime-samples", "16",
               methods="occlusion,shap,lime") == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert records[1]["words"] == [] and "error" not in records[1]


def test_an_interrupted_run_resumes_to_the_uninterrupted_file(model_dir, data, tmp_path, reference):
    """kill -9 in the middle of a run (a real process), then --resume: the same bytes."""
    out = tmp_path / "out.jsonl"
    many = tmp_path / "many.txt"
    many.write_text("\n".join(_texts(400, seed=2)) + "\n", encoding="utf-8")
    full = tmp_path / "full.jsonl"
    assert run(model_dir, many, full) == 0
    process = subprocess.Popen([sys.executable, "-m", "bert_lrp", "explain", "--model", str(model_dir), "--file",
                                str(many), "--jsonl", str(out), "--methods", METHODS, "--batch-size", "4", "--quiet"],
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # as the tests' own (conftest): same rounding
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.05)
    process.kill()
    assert process.wait() == -9  # killed mid-run, not finished
    assert 0 < out.stat().st_size < full.stat().st_size
    assert run(model_dir, many, out, "--resume") == 0
    assert out.read_bytes() == full.read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(
    st.binary(max_size=64),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                 max_leaves=8).map(lambda value: json.dumps(value).encode("utf-8"))))
def test_any_settings_file_content_is_refused_in_one_line_or_matches(model_dir, data, tmp_path, capsys, content):
    folder = tmp_path / f"fuzz{abs(hash(content))}"
    folder.mkdir()
    out = folder / "out.jsonl"
    out.write_bytes(b'{"index":0}\n')
    (folder / "out.jsonl.run.json").write_bytes(content)
    capsys.readouterr()
    code = run(model_dir, data, out, "--resume")
    assert code in (1, 2)
    assert "out.jsonl.run.json" in one_error_line(capsys)
    assert out.read_bytes() == b'{"index":0}\n'
    shutil.rmtree(folder)


def test_a_stride_above_the_window_is_refused_before_anything_is_written(model_dir, data, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run(model_dir, data, out, "--stride", "70") == 2  # the tiny model reads 64 positions
    assert "--stride 70 is larger than the window (62 pieces)" in one_error_line(capsys)
    assert not out.exists() and not (tmp_path / "out.jsonl.run.json").exists()
