"""Options that size memory or time are bounded, and the odd inputs of a hostile user end in one
line naming the option or value, the right exit code (2: a bad command line) and nothing written.

* Sample counts, steps and rows per pass have a maximum in their registry entry: refused at once,
  before any model is loaded or any tensor allocated.
* Seeds are 0..2**31-1 on every command (explain, evaluate, train, inspect).
* ``--skip-layers`` ranges are checked against the model before they are expanded; skipping every
  layer is refused.
* ``train`` refuses ``--output-dir`` = ``--model``, fits its default ``--max-length`` to the model
  and refuses an explicit one beyond the model's positions.
* ``benchmark`` refuses empty sizes and repeats before creating anything.
* ``inspect mask``: a mask past the model's positions is an error saying so; a cut text is warned
  about; RoBERTa's masked LM works. ``inspect embeddings --samples 1`` is refused.
* ``evaluate --methods random`` says what random is; invalid UTF-8 in an argument is named; a
  broken pipe ends quietly with 141.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from bert_lrp import cli
from bert_lrp.errors import UsageError
from bert_lrp.models.ablation import parse_layers

from test_cli_errors import REPO, assert_one_line_error, run  # noqa: E402  (tests/ is on sys.path under pytest)
from test_explain_cli import make_model_dir  # noqa: E402

SST2 = Path(__file__).parent / "fixtures" / "sst2"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("bounds") / "model")


@pytest.mark.parametrize("flag, value, bound", [
    ("--lime-samples", "30000000", "2..100,000"),
    ("--shap-samples", str(10 ** 12), "2..100,000"),
    ("--smoothgrad-samples", str(10 ** 12), "1..10,000"),
    ("--ig-steps", str(10 ** 12), "1..10,000"),
    ("--rows-per-forward", str(10 ** 9), "1..4,096"),
    ("--ig-batch", str(10 ** 9), "1..4,096"),
])
def test_options_that_size_memory_are_refused_at_once(capsys, model_dir, flag, value, bound):
    tracemalloc.start()
    started = time.perf_counter()
    code, _, err = run(capsys, "explain", "--model", model_dir, flag, value, "a good film")
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert code == 2
    assert_one_line_error(err, "explain", flag, value, bound)
    assert seconds < 5 and peak < 50 * 2 ** 20  # refused before any work: no model, no big tensor


@pytest.mark.parametrize("command", [
    ["explain", "a good film"],
    ["evaluate", "--data", str(SST2 / "dev_sample.tsv"), "--out", "never"],
    ["train", "--train-file", "x.tsv", "--model", "m", "--output-dir", "o"],
    ["inspect", "embeddings", "--file", "x.txt", "--words", "a"],
])
def test_a_seed_beyond_what_generators_take_is_a_usage_error_everywhere(capsys, command, tmp_path):
    code, _, err = run(capsys, *command, "--seed", str(10 ** 23))
    assert code == 2
    assert_one_line_error(err, command[0], "--seed", "0..2,147,483,647")
    assert not Path("never").exists()


def test_layer_ranges_are_checked_before_they_are_expanded():
    started = time.perf_counter()
    with pytest.raises(UsageError, match="skip_layers: layer 3 does not exist; the model has layers 1..2"):
        parse_layers("1-40000000", "skip_layers", 2)
    assert time.perf_counter() - started < 0.5
    with pytest.raises(UsageError, match="names all 2 layers; at least one must stay"):
        parse_layers("1-2", "skip_layers", 2)
    assert parse_layers("2", "skip_layers", 2) == [2]


def test_evaluate_refuses_skipping_every_layer(capsys, model_dir, tmp_path):
    out = tmp_path / "out"
    code, _, err = run(capsys, "evaluate", "--model", model_dir, "--data", SST2 / "dev_sample.tsv", "--limit", "2",
                       "--methods", "gi", "--skip-layers", "1-2", "--out", out)
    assert code == 2
    assert_one_line_error(err, "evaluate", "--skip-layers", "at least one must stay")
    assert not out.exists()


def _train_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"a good film {i}\t1\nthe bad movie {i}\t0\n" for i in range(4)))
    return path


def test_train_refuses_to_overwrite_the_model_it_starts_from(capsys, model_dir, tmp_path):
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    code, _, err = run(capsys, "train", "--train-file", _train_file(tmp_path), "--model", model_dir,
                       "--output-dir", model_dir)
    assert code == 2
    assert_one_line_error(err, "train", "--output-dir", "would overwrite the model it starts from")
    assert {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()} == before


def test_train_fits_its_default_max_length_to_the_model_and_refuses_a_longer_one(capsys, model_dir, tmp_path):
    train = _train_file(tmp_path)
    out = tmp_path / "trained"
    code, _, err = run(capsys, "train", "--train-file", train, "--model", model_dir, "--output-dir", out,
                       "--max-steps", "1", "--batch-size", "4", "--threads", "1")
    assert code == 0, err  # the tiny model reads 64 positions; the default 128 is fitted to it
    assert (out / "model.safetensors").is_file()
    code, _, err = run(capsys, "train", "--train-file", train, "--model", model_dir, "--output-dir",
                       tmp_path / "other", "--max-length", "100", "--max-steps", "1")
    assert code == 2
    assert_one_line_error(err, "train", "--max-length 100 is more than the model reads (64 positions)")


@pytest.mark.parametrize("flag, value, expected", [
    ("--seq-lens", "0", "--seq-lens '0': 0 is outside 3..100,000"),
    ("--batch-sizes", "2,x", "expected comma-separated whole numbers, got 'x'"),
    ("--repeats", "0", "--repeats: must be at least 1, got 0"),
])
def test_benchmark_refuses_empty_sizes_before_creating_anything(capsys, tmp_path, flag, value, expected):
    out = tmp_path / "bench"
    code, _, err = run(capsys, "benchmark", flag, value, "--out", out)
    assert code == 2
    assert_one_line_error(err, "benchmark", expected)
    assert not out.exists()


def test_evaluate_with_only_the_random_baseline_says_what_random_is(capsys, model_dir, tmp_path):
    code, _, err = run(capsys, "evaluate", "--model", model_dir, "--data", SST2 / "dev_sample.tsv", "--methods",
                       "random", "--out", tmp_path / "out")
    assert code == 2
    assert_one_line_error(err, "evaluate", "random is the baseline every evaluation includes")


def test_inspect_embeddings_needs_two_samples(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", "embeddings", "--file", tmp_path / "x.txt", "--words", "a", "--samples", "1")
    assert code == 2
    assert_one_line_error(err, "inspect", "--samples", "must be in 2..100,000, got 1")


def test_invalid_utf8_in_an_argument_is_named():
    done = subprocess.run([sys.executable, "-m", "bert_lrp", "explain", b"ab\xe9"], capture_output=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "argument 2 is not valid UTF-8 (byte 0xe9 at character 3)" in err


def test_a_broken_pipe_ends_quietly_with_141(model_dir, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("a good film\n" * 400)
    reader = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    writer = subprocess.run([sys.executable, "-m", "bert_lrp", "explain", "--model", str(model_dir), "--methods",
                             "gs", "--file", str(texts), "--color", "none"], stdout=reader.stdin,
                            stderr=subprocess.PIPE, cwd=REPO, timeout=300)
    reader.stdin.close()
    reader.wait()
    assert writer.returncode == 141
    assert writer.stderr.decode().strip() == ""


# ------------------------------------------------------------------ inspect mask
def _roberta_mlm(folder: Path) -> Path:
    """A tiny RobertaForMaskedLM with a byte-level BPE vocabulary (the 256 byte symbols and the
    special tokens, no merges)."""
    from tokenizers import pre_tokenizers

    from bert_lrp.models.config import RobertaConfig
    from bert_lrp.models.roberta import RobertaForMaskedLM

    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + sorted(pre_tokenizers.ByteLevel.alphabet()) + ["<mask>"]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokens), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=20, max_position_embeddings=40)
    model = RobertaForMaskedLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    model.save_pretrained(folder)
    return folder


def test_inspect_mask_reads_robertas_masked_lm(tmp_path, capsys):
    folder = _roberta_mlm(tmp_path / "roberta-mlm")
    out = tmp_path / "mask.json"
    code, _, err = run(capsys, "inspect", "mask", "--model", folder, "--json", out, "--quiet", "a b<mask> c")
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["model_class"] == "RobertaForMaskedLM" and len(report["masks"]) == 1
    mask = report["masks"][0]
    assert mask["logit_lens"][-1]["top"][0]["token"] == mask["output"][0]["token"]  # last layer = the output


def test_inspect_mask_past_the_models_positions_is_an_error_and_a_cut_text_a_warning(tmp_path, capsys):
    folder = _roberta_mlm(tmp_path / "roberta-mlm")  # 38 positions
    code, _, err = run(capsys, "inspect", "mask", "--model", folder, "--quiet", "x" * 60 + "<mask>")
    assert code == 2
    assert_one_line_error(err, "inspect", "<mask> at token 61 is beyond the model's 38 positions")
    code, _, err = run(capsys, "inspect", "mask", "--model", folder, "--quiet", "<mask>" + "x" * 60)
    assert code == 0
    assert "warning: input 1 (text): 63 tokens, cut to 38" in err
