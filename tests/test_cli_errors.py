"""The command line's error boundary: every bad input is one line on stderr with exit code 2
(bad command line) or 1 (failure), never a traceback, and leaves no output behind.

Models are tiny random ones (see test_explain_cli.make_model_dir); data files are written here.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bert_lrp import cli
from bert_lrp.cli import evaluate as evaluate_cli, explain as explain_cli
from bert_lrp.attribution import heatmaps as heatmap_component
from bert_lrp.evaluation import faithfulness as F
from bert_lrp._io import atomic_write_many, atomic_write_texts
from bert_lrp.errors import UsageError, describe

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random sequence classifier (max 64 positions); tests copy it before damaging it."""
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


def run(capsys, *argv):
    """``bert-lrp ARGV`` in-process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, command: str, *words: str) -> str:
    """``err`` is one line ``bert-lrp COMMAND: error: ...`` containing ``words``; no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bert-lrp {command}: error: "), err
    for word in words:
        assert word in lines[0], (word, err)
    return lines[0]


def python_m(*argv, stdin: bytes = b"", cwd=None, env=None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "bert_lrp", *map(str, argv)], input=stdin, capture_output=True,
                          cwd=cwd, env=environment, timeout=120)


# ------------------------------------------------------------------ the boundary itself
def test_no_command_prints_help_to_stderr_and_exits_2(capsys):
    code, out, err = run(capsys)
    assert code == 2 and out == "" and "usage: bert-lrp" in err and "explain" in err


def test_help_exits_0(capsys):
    code, out, err = run(capsys, "--help")
    assert code == 0 and "usage: bert-lrp" in out and "--debug" in out and err == ""


def test_unknown_command_and_global_option(capsys):
    code, _, err = run(capsys, "explian")
    assert code == 2 and "unknown command 'explian'" in err and "did you mean explain" in err
    code, _, err = run(capsys, "--verbose", "explain")
    assert code == 2 and "unknown option --verbose" in err
    assert "Traceback" not in err


def test_argparse_errors_are_one_line_naming_the_flag_as_typed(capsys, tiny_model):
    code, _, err = run(capsys, "explain", "--model", tiny_model, "--batch-size", "0", "a film")
    assert code == 2
    assert_one_line_error(err, "explain", "--batch-size", "at least 1")
    code, _, err = run(capsys, "explain", "--no-such-flag", "a film")
    assert code == 2
    assert_one_line_error(err, "explain", "unrecognized arguments: --no-such-flag")
    code, _, err = run(capsys, "evaluate")
    assert code == 2
    assert_one_line_error(err, "evaluate", "--data", "--out", "required")
    code, _, err = run(capsys, "evaluate", "--data", "x.tsv", "--out", "o", "--ig-steps", "many")
    assert code == 2
    assert_one_line_error(err, "evaluate", "--ig-steps", "'many'")


def test_debug_flag_and_environment_show_the_traceback(capsys, tmp_path, monkeypatch):
    missing = tmp_path / "no-model"
    with pytest.raises(UsageError, match="no-model"):
        cli.main(["--debug", "explain", "--model", str(missing), "a film"])
    monkeypatch.setenv("BERT_LRP_DEBUG", "1")
    with pytest.raises(UsageError):
        cli.main(["explain", "--model", str(missing), "a film"])
    monkeypatch.setenv("BERT_LRP_DEBUG", "0")
    code, _, err = run(capsys, "explain", "--model", missing, "a film")
    assert code == 2
    assert_one_line_error(err, "explain", str(missing), "no such folder")


def test_keyboard_interrupt_exits_130_with_one_line(capsys, tiny_model, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(explain_cli, "run", interrupted)
    code, _, err = run(capsys, "explain", "--model", tiny_model, "a film")
    assert code == 130
    assert err.strip() == "bert-lrp explain: interrupted"


def test_an_unexpected_exception_is_one_line_pointing_at_debug(capsys, tiny_model, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("head_mask")

    monkeypatch.setattr(explain_cli, "run", broken)
    code, _, err = run(capsys, "explain", "--model", tiny_model, "a film")
    assert code == 1
    assert_one_line_error(err, "explain", "KeyError", "--debug")


def test_os_errors_name_the_file():
    message, code = describe(PermissionError(13, "Permission denied", "secret.txt"))
    assert (message, code) == ("secret.txt: Permission denied", 1)
    message, code = describe(IsADirectoryError(21, "Is a directory", "out"))
    assert (message, code) == ("out: Is a directory", 1)


def test_multi_line_messages_become_one_line_without_control_characters():
    message, code = describe(UsageError("first\n  second \x1b]0;T\x07"))
    assert code == 2 and message == "first; second \\x1b]0;T\\x07"


# ------------------------------------------------------------------ explain: inputs
def test_invalid_utf8_in_file_names_file_and_line(capsys, tiny_model, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"a good film\nthe \xff movie\n")
    html = tmp_path / "out.html"
    code, out, err = run(capsys, "explain", "--model", tiny_model, "--file", texts, "--html", html)
    assert code == 1 and out == ""
    assert_one_line_error(err, "explain", "texts.txt, line 2", "not valid UTF-8", "0xff")
    assert not html.exists()


def test_invalid_utf8_on_stdin(tiny_model, tmp_path):
    result = python_m("explain", "--model", tiny_model, "--json", tmp_path / "out.json", "-",
                      stdin=b"a good film\nbad \xc3\x28 movie\n")
    assert result.returncode == 1
    assert_one_line_error(result.stderr.decode(), "explain", "stdin, line 2", "not valid UTF-8")
    assert not (tmp_path / "out.json").exists()


def test_missing_file_and_folder_as_file(capsys, tiny_model, tmp_path):
    code, _, err = run(capsys, "explain", "--model", tiny_model, "--file", tmp_path / "nope.txt")
    assert code == 2
    assert_one_line_error(err, "explain", "--file", "nope.txt", "no such file")
    code, _, err = run(capsys, "explain", "--model", tiny_model, "--file", tmp_path)
    assert code == 2
    assert_one_line_error(err, "explain", "--file", str(tmp_path), "is a folder")


def test_no_text_at_all(capsys, tiny_model, tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    code, _, err = run(capsys, "explain", "--model", tiny_model, "--file", blank)
    assert code == 2
    assert_one_line_error(err, "explain", "no text to explain")


def test_truncated_weights_are_a_one_line_error(capsys, model_copy, tmp_path):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    html, js = tmp_path / "reports" / "out.html", tmp_path / "reports" / "out.json"
    code, out, err = run(capsys, "explain", "--model", model_copy, "--html", html, "--json", js, "a film")
    assert code == 1 and out == ""
    assert_one_line_error(err, "explain", str(weights))
    assert not (tmp_path / "reports").exists()


class _RunsCode:
    """Unpickling this calls os.system: torch.load(weights_only=True) must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unsafe_pickle_weights_are_refused(capsys, model_copy, tmp_path):
    marker = tmp_path / "code-ran"
    (model_copy / "model.safetensors").unlink()
    with open(model_copy / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"bert.embeddings.word_embeddings.weight": _RunsCode(marker)}, handle, protocol=2)
    code, _, err = run(capsys, "explain", "--model", model_copy, "a film")
    assert code == 1
    line = assert_one_line_error(err, "explain", "pytorch_model.bin", "refused")
    assert "weights_only` set to `False`" not in line  # no advice to load it unsafely
    assert not marker.exists()


def test_model_folder_without_config(capsys, tmp_path):
    code, _, err = run(capsys, "explain", "--model", tmp_path, "a film")
    assert code == 2
    assert_one_line_error(err, "explain", "config.json")


def test_a_long_text_is_explained_in_windows_with_a_message(capsys, tiny_model, tmp_path):
    text = " ".join(["the film is great"] * 40)  # 160 words, the model reads 64 positions
    code, out, err = run(capsys, "explain", "--model", tiny_model, "--methods", "gi", "a film", text)
    assert code == 0 and "Traceback" not in err
    warning = next(line for line in err.splitlines() if "warning" in line)
    assert warning.startswith("bert-lrp explain: warning: input 2 (argument 2): 162 tokens, more than the model's 64 "
                              "positions: explained in ") and "overlapping windows" in warning


def test_a_long_text_is_cut_with_a_warning(capsys, tiny_model, tmp_path):
    text = " ".join(["the film is great"] * 40)  # 160 words, the model reads 64 positions
    js = tmp_path / "long.json"
    code, out, err = run(capsys, "explain", "--model", tiny_model, "--methods", "gi", "--json", js, "--no-windows",
                         "a film", text)
    assert code == 0 and "Traceback" not in err
    warning = next(line for line in err.splitlines() if "warning" in line)
    assert warning == ("bert-lrp explain: warning: input 2 (argument 2): 162 tokens, cut to 64 (98 dropped; "
                       "the model reads at most 64)")
    assert "input 1" not in err
    assert "(+" in out and "characters)" in out  # the text: line shows the start of a long text only


def test_html_stays_bounded_for_long_texts(capsys, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(heatmap_component, "MAX_ATTENTION_TOKENS", 10)
    monkeypatch.setattr(heatmap_component, "MAX_HEATMAP_TOKENS", 12)
    html = tmp_path / "long.html"
    text = " ".join(["the film is great"] * 40)
    code, _, err = run(capsys, "explain", "--model", tiny_model, "--methods", "lrp,gi", "--quiet", "--html", html,
                       "--no-windows", text)
    assert code == 0
    page = html.read_text(encoding="utf-8")
    heatmaps = len(re.findall("Relevance per layer", page))
    assert heatmaps >= 1
    assert page.count("<rect") == heatmaps * 2 * 12 + 10 * 10  # 2 layers x 12 tokens each, 10 x 10 attention
    assert "shows the first 10 of the 64 tokens" in page and "shows the first 12 of the 64 tokens" in page
    assert "98 dropped" in page


# ------------------------------------------------------------------ explain: terminal safety
ESCAPES = "\x1b]0;TITLE\x07 \x1b[31mred\x1b[0m \x9b1m \x7f \u202eevil\u202c \u2066iso\u2069 \u200f \u061c"


@pytest.mark.parametrize("colour", ["none", "256", "truecolor"])
def test_terminal_output_neutralises_control_and_bidi_characters(capsys, tiny_model, colour):
    code, out, _ = run(capsys, "explain", "--model", tiny_model, "--color", colour, "--methods", "gi",
                       f"a film {ESCAPES} is great")
    assert code == 0
    assert "\\x1b]0;TITLE\\x07" in out and "\\u202e" in out and "\\x9b" in out and "\\x7f" in out
    ours = re.sub(r"\x1b\[[0-9;]*m", "", out)  # the colour codes explain itself writes
    assert not [c for c in ours if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0]
    for bidi in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c":
        assert bidi not in out


# ------------------------------------------------------------------ explain: outputs
def test_outputs_that_cannot_be_written_are_refused_before_any_work(capsys, tiny_model, tmp_path):
    code, _, err = run(capsys, "explain", "--model", tiny_model, "--html", tmp_path, "a film")
    assert code == 2
    assert_one_line_error(err, "explain", "--html", "is a folder")
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = run(capsys, "explain", "--model", tiny_model, "--json", afile / "out.json", "a film")
    assert code == 2
    assert_one_line_error(err, "explain", "--json", "is a file, not a folder")
    code, _, err = run(capsys, "explain", "--model", tiny_model, "--json", tmp_path / "same", "--html",
                       tmp_path / "same", "a film")
    assert code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_outputs_are_written_all_or_nothing(tmp_path):
    def fails(temporary):
        raise OSError(28, "No space left on device", temporary)

    first = tmp_path / "new" / "deeper" / "a.html"
    with pytest.raises(OSError):
        atomic_write_many({first: lambda t: Path(t).write_text("complete"), tmp_path / "b.json": fails})
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no target, no temporary, no created folder
    atomic_write_texts({first: "complete", tmp_path / "b.json": "{}"})
    assert first.read_text() == "complete" and (tmp_path / "b.json").read_text() == "{}"
    assert not list(tmp_path.rglob("*.tmp"))


# ------------------------------------------------------------------ explain: the default model
def test_default_model_is_found_under_the_install_prefix(capsys, tiny_model, tmp_path, monkeypatch):
    name = "checkpoints/test-default-model"
    prefix = tmp_path / "prefix"
    shutil.copytree(tiny_model, prefix / "share" / "bert-lrp" / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr("bert_lrp.models.loading.DEFAULT_MODEL", name)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    code, out, err = run(capsys, "explain", "--methods", "gi", "a film")
    assert code == 0 and "prediction:" in out
    shutil.rmtree(prefix / "share")
    code, _, err = run(capsys, "explain", "a film")
    assert code == 2
    assert_one_line_error(err, "explain", f"{name} was not found", str(prefix / "share" / "bert-lrp" / name),
                          str(elsewhere / name), "--model")


# ------------------------------------------------------------------ evaluate
def write(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


BAD_DATA = {
    "empty.tsv": ("", 1, ["empty.tsv", "empty"]),
    "banana.tsv": ("sentence\tlabel\na good film\t1\nbad\tbanana\n", 1,
                   ["banana.tsv, line 3", "unknown label 'banana'", "negative (0)"]),
    "field.tsv": ("sentence\tlabel\na good film\t1\nthe bad movie\n", 1,
                  ["field.tsv, line 3", "expected 2 fields", "got 1"]),
    "header.tsv": ("review\tlabel\na good film\t1\n", 1, ["header.tsv, line 1", "no text column", "review, label"]),
    "utf8.tsv": (b"sentence\tlabel\na good film\t1\nthe \xff film\t0\n", 1, ["utf8.tsv, line 3", "not valid UTF-8"]),
    "only-header.tsv": ("sentence\tlabel\n", 1, ["only-header.tsv", "no examples"]),
}


@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_evaluate_bad_data_names_file_and_line(capsys, tiny_model, tmp_path, name):
    content, expected, words = BAD_DATA[name]
    data = write(tmp_path / name, content)
    out = tmp_path / "runs" / "faithfulness"
    code, stdout, err = run(capsys, "evaluate", "--model", tiny_model, "--data", data, "--out", out,
                            "--methods", "gi", "--no-progress")
    assert code == expected and stdout == ""
    assert_one_line_error(err, "evaluate", *words)
    assert not (tmp_path / "runs").exists()


def test_evaluate_missing_data_and_folder_as_data(capsys, tiny_model, tmp_path):
    out = tmp_path / "out"
    code, _, err = run(capsys, "evaluate", "--model", tiny_model, "--data", tmp_path / "dev.tsv", "--out", out)
    assert code == 2
    assert_one_line_error(err, "evaluate", "--data", "dev.tsv", "no such file")
    code, _, err = run(capsys, "evaluate", "--model", tiny_model, "--data", tmp_path, "--out", out)
    assert code == 2
    assert_one_line_error(err, "evaluate", "--data", "is a folder")
    assert not out.exists()


def test_evaluate_out_that_is_a_file(capsys, tiny_model, tmp_path):
    data = write(tmp_path / "dev.tsv", "sentence\tlabel\na good film\t1\n")
    afile = write(tmp_path / "results", "not a folder")
    code, _, err = run(capsys, "evaluate", "--model", tiny_model, "--data", data, "--out", afile)
    assert code == 2
    assert_one_line_error(err, "evaluate", "--out", "is a file")


def test_evaluate_leaves_no_empty_out_folder_when_it_fails_later(capsys, tiny_model, tmp_path, monkeypatch):
    data = write(tmp_path / "dev.tsv", "sentence\tlabel\na good film\t1\nthe bad movie\tnegative\n")

    def broken(*args, **kwargs):
        raise RuntimeError("attribution failed")

    monkeypatch.setattr(F, "evaluate_examples", broken)
    out = tmp_path / "runs" / "eval"
    code, _, err = run(capsys, "evaluate", "--model", tiny_model, "--data", data, "--out", out, "--methods", "gi",
                       "--no-progress")
    assert code == 1
    assert_one_line_error(err, "evaluate", "attribution failed")
    assert not (tmp_path / "runs").exists()


def test_evaluate_reads_the_sst2_sample_with_the_training_reader(capsys, tiny_model, tmp_path):
    sample = REPO / "tests" / "fixtures" / "sst2" / "dev_sample.tsv"
    out = tmp_path / "eval"
    code, stdout, err = run(capsys, "evaluate", "--model", tiny_model, "--data", sample, "--out", out,
                            "--methods", "gi", "--limit", "3", "--no-progress")
    assert code == 0 and "Traceback" not in err and "| GI" in stdout
    assert (out / "results.json").is_file()


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("parser", [explain_cli.build_parser, evaluate_cli.build_parser], ids=["explain", "evaluate"])
def test_every_option_is_hyphenated_and_has_help(parser):
    for action in parser()._actions:
        for option in action.option_strings:
            assert option.startswith("-") and "_" not in option, option
        assert action.help and action.help.strip(), action.option_strings or action.dest
