"""Explaining a data set: streamed JSON lines in input order, resume, torchrun shards, every label
from one pass, long texts in windows."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from bert_lrp import BertForSequenceClassification, BertForTokenClassification, BertTokenizer, cli, explain
from bert_lrp._jsonl import JsonlWriter
from bert_lrp.attribution.road import explain_windows
from bert_lrp.attribution.windows import window_spans

from test_explain_cli import VOCAB, make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)
from test_faithfulness import _free_port  # noqa: E402

WORDS = [w for w in VOCAB[5:] if not w.startswith("##") and w.isalpha()]


def _texts(count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 14, (count,), generator=generator)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(n),), generator=generator)) for n in lengths]


@pytest.fixture
def setup(tmp_path):
    model_dir = make_model_dir(tmp_path / "model")
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(_texts(37)) + "\n", encoding="utf-8")
    return model_dir, data


def _run(model_dir, data, out, *extra):
    return cli.main(["explain", "--model", str(model_dir), "--file", str(data), "--jsonl", str(out),
                     "--methods", "lrp,gi,gs", "--batch-size", "4", "--quiet", *extra])


def _records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_records_follow_input_order_and_equal_in_process_explanations(setup, tmp_path):
    model_dir, data = setup
    out = tmp_path / "out.jsonl"
    assert _run(model_dir, data, out) == 0
    records = _records(out)
    texts = data.read_text(encoding="utf-8").splitlines()
    assert [r["index"] for r in records] == list(range(len(texts)))
    assert [r["text"] for r in records] == texts
    model = BertForSequenceClassification.from_pretrained(model_dir)
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    for record in records[:5]:
        alone = explain(model, tokenizer([record["text"]]), ["lrp", "gi", "gs"])
        for method in ("lrp", "gradient_x_input", "gradient"):
            expected = alone.scores[method][0, : len(record["tokens"])]
            # batched with other lengths (padding) vs alone: the same up to float32 rounding
            torch.testing.assert_close(torch.tensor(record["scores"][method]["tokens"]), expected,
                                       rtol=1e-4, atol=1e-5)
            words = [sum(expected[p] for p in w["pieces"]) for w in record["words"]]
            torch.testing.assert_close(torch.tensor(record["scores"][method]["words"]), torch.tensor(words),
                                       rtol=1e-4, atol=1e-5)


def test_resume_after_an_interruption_gives_the_same_file(setup, tmp_path, monkeypatch):
    model_dir, data = setup
    full = tmp_path / "full.jsonl"
    assert _run(model_dir, data, full) == 0
    cut = tmp_path / "cut.jsonl"
    real_write, calls = JsonlWriter.write, []

    def dies_after_20(self, record):
        calls.append(1)
        if len(calls) > 20:
            self.handle.write('{"index": 20, "torn')  # half a line, as a kill mid-write leaves it
            self.handle.flush()
            raise KeyboardInterrupt
        real_write(self, record)

    monkeypatch.setattr(JsonlWriter, "write", dies_after_20)
    with pytest.raises(KeyboardInterrupt):
        from bert_lrp.cli import explain as explain_cli

        explain_cli.main(["--model", str(model_dir), "--file", str(data), "--jsonl", str(cut), "--methods",
                          "lrp,gi,gs", "--batch-size", "4", "--quiet"])
    monkeypatch.setattr(JsonlWriter, "write", real_write)
    assert _run(model_dir, data, cut) == 2  # refuses to append without --resume
    assert _run(model_dir, data, cut, "--resume") == 0
    assert cut.read_bytes() == full.read_bytes()


def test_resume_refuses_other_settings(setup, tmp_path, capsys):
    model_dir, data = setup
    out = tmp_path / "out.jsonl"
    assert _run(model_dir, data, out) == 0
    assert cli.main(["explain", "--model", str(model_dir), "--file", str(data), "--jsonl", str(out),
                     "--methods", "lrp", "--resume", "--quiet"]) == 2
    assert "other settings: methods (" in capsys.readouterr().err


@pytest.mark.slow
def test_two_torchrun_processes_write_the_same_file_as_one(setup, tmp_path):
    model_dir, data = setup
    single = tmp_path / "single.jsonl"
    assert _run(model_dir, data, single) == 0
    double = tmp_path / "double.jsonl"
    port = str(_free_port())
    processes = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, OMP_NUM_THREADS="1")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "bert_lrp.cli", "explain", "--model", str(model_dir), "--file", str(data),
             "--jsonl", str(double), "--methods", "lrp,gi,gs", "--batch-size", "4", "--quiet"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    merged, reference = _records(double), _records(single)
    assert [r["index"] for r in merged] == [r["index"] for r in reference]
    for a, b in zip(merged, reference):  # other batch companions: float32 rounding only
        assert a["words"] == b["words"] and a["prediction"] == b["prediction"]
        torch.testing.assert_close(torch.tensor(a["scores"]["lrp"]["tokens"]), torch.tensor(b["scores"]["lrp"]["tokens"]),
                                   rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob("double.jsonl.part*"))


def _model_and_batch(tmp_path, token=False):
    folder = make_model_dir(tmp_path / "model", token=token)
    cls = BertForTokenClassification if token else BertForSequenceClassification
    return cls.from_pretrained(folder), BertTokenizer.from_pretrained(folder), folder


@pytest.mark.parametrize("rule", ["attnlrp", "bert-lrp"])
def test_target_all_equals_each_label_alone_from_one_pass(tmp_path, rule):
    model, tokenizer, _ = _model_and_batch(tmp_path)
    batch = tokenizer(["the film is great", "a bad movie and not very good"])
    every = explain(model, batch, ["gs", "gi", "lrp"], target="all", rule=rule)
    assert every.forward_passes == 1 and every.backward_passes == 1
    assert every.scores["lrp"].shape == (2, 2, batch["input_ids"].shape[1])
    for label in range(2):
        alone = explain(model, batch, ["gs", "gi", "lrp"], target=label, rule=rule)
        for method in alone.scores:
            torch.testing.assert_close(every.scores[method][:, label], alone.scores[method], rtol=0, atol=1e-5)
        assert torch.equal(every.for_label(label).target, alone.target)


def test_target_all_for_token_classification_at_a_position(tmp_path):
    model, tokenizer, _ = _model_and_batch(tmp_path, token=True)
    batch = tokenizer(["she moved to paris in may"])
    every = explain(model, batch, ["lrp", "gi"], target=(4, "all"))
    for label in range(3):
        alone = explain(model, batch, ["lrp", "gi"], target=(4, label))
        for method in alone.scores:
            torch.testing.assert_close(every.scores[method][:, label], alone.scores[method], rtol=0, atol=1e-5)


def test_target_all_in_the_jsonl_records(setup, tmp_path):
    model_dir, data = setup
    out = tmp_path / "all.jsonl"
    assert _run(model_dir, data, out, "--target", "all") == 0
    record = _records(out)[0]
    assert record["target"] == "all" and set(record["labels"]) == {"negative", "positive"}
    assert set(record["labels"]["positive"]["scores"]) == {"lrp", "gradient_x_input", "gradient"}


def test_a_text_that_fits_one_window_is_explained_as_without_windows(tmp_path):
    model, tokenizer, _ = _model_and_batch(tmp_path)
    text = "the film is great and very good"
    windowed = explain_windows(model, tokenizer, text, ["lrp", "gi", "gs"])
    plain = explain(model, tokenizer([text]), ["lrp", "gi", "gs"])
    assert windowed.windows == 1
    for method in plain.scores:
        torch.testing.assert_close(windowed.label().scores[method], plain.scores[method][0], rtol=0, atol=0)


def test_window_spans_cover_every_piece_with_the_stride():
    assert window_spans(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert window_spans(11, 4, 3) == [(0, 4), (3, 7), (6, 10), (7, 11)]
    assert window_spans(3, 4, 2) == [(0, 3)]


def test_long_texts_are_explained_in_windows_and_say_so(tmp_path, capsys):
    model, tokenizer, folder = _model_and_batch(tmp_path)
    text = " ".join(_texts(30, seed=3))  # about 200 pieces, more than the 64 positions
    windowed = explain_windows(model, tokenizer, text, ["lrp"], stride=20)
    length = len(windowed.encoding["input_ids"][0])
    assert length > 64 and windowed.windows == len(windowed.spans) > 1
    covered = torch.zeros(length, dtype=torch.bool)
    for start, end in windowed.spans:
        covered[start:end] = True
    assert covered[1:-1].all() and windowed.label().scores["lrp"].shape == (length,)
    data = tmp_path / "long.txt"
    data.write_text(text + "\nthe film is great\n", encoding="utf-8")
    out = tmp_path / "long.jsonl"
    assert cli.main(["explain", "--model", str(folder), "--file", str(data), "--jsonl", str(out), "--methods", "lrp",
                     "--stride", "20", "--quiet"]) == 0
    assert "overlapping windows" in capsys.readouterr().err
    first, second = _records(out)
    assert first["windows"] == windowed.windows and len(first["tokens"]) == length
    torch.testing.assert_close(torch.tensor(first["scores"]["lrp"]["tokens"]), windowed.label().scores["lrp"],
                               rtol=1e-5, atol=1e-6)
    assert "windows" not in second


def test_the_terminal_explains_a_long_text_in_windows_and_every_label(tmp_path, capsys):
    folder = make_model_dir(tmp_path / "model")
    text = " ".join(_texts(30, seed=3))
    assert cli.main(["explain", "--model", str(folder), "--methods", "lrp", "--color", "none", "--target", "all",
                     text, "the film is great"]) == 0
    captured = capsys.readouterr()
    assert "overlapping windows" in captured.err
    assert captured.out.count("prediction:") == 4  # two texts x two labels


@pytest.mark.slow
def test_the_dataset_benchmark_times_every_entry_against_the_floor(tmp_path):
    from bert_lrp.evaluation.dataset_benchmark import run_dataset_benchmark

    folder = make_model_dir(tmp_path / "model")
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(_texts(12)) + "\n", encoding="utf-8")
    result = run_dataset_benchmark(folder, data, tmp_path / "out", rounds=1, batch_size=4, threads=1, log=lambda m: None)
    assert set(result["median_s"]) >= {"cli-5 (--jsonl, process start included)", "explain-lrp sorted",
                                       "transformers floor", "captum saliency"}
    assert result["ratio_to_floor"]["transformers floor"] == 1.0
    assert (tmp_path / "out" / "dataset.md").read_text().count("|") > 20


@pytest.mark.parametrize("rule", ["attnlrp", "bert-lrp"])
def test_separate_passes_give_what_the_stacked_pass_gives(tmp_path, rule):
    model, tokenizer, _ = _model_and_batch(tmp_path)
    batch = tokenizer(["the film is great", "a bad movie and not very good"])
    stacked = explain(model, batch, ["gs", "gi", "lrp"], rule=rule, schedule="stacked", layers=True)
    separate = explain(model, batch, ["gs", "gi", "lrp"], rule=rule, schedule="separate", layers=True)
    assert (stacked.backward_passes, separate.backward_passes) == (1, 2)
    for method in stacked.scores:
        torch.testing.assert_close(separate.scores[method], stacked.scores[method], rtol=1e-5, atol=1e-7)
    for method in stacked.layer_scores:
        torch.testing.assert_close(separate.layer_scores[method][-1], stacked.layer_scores[method][-1],
                                   rtol=1e-5, atol=1e-7)


def test_explaining_does_not_import_torchs_symbolic_shapes(tmp_path):
    # torch.autograd.grad(..., grad_outputs=...) imports torch's symbolic-shapes module (and sympy)
    # on first use: about 2 s of every command's start-up. The CLI's explain path must not need it.
    model_dir = make_model_dir(tmp_path / "model")
    script = ("import sys; from bert_lrp import cli; "
              f"code = cli.main(['explain', '--model', {str(model_dir)!r}, '--methods', 'lrp,gi,gs,lat,rollout', "
              f"'--quiet', '--json', {str(tmp_path / 'out.json')!r}, 'a good film']); "
              "print('sympy' in sys.modules, code)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False 0"
    assert (tmp_path / "out.json").is_file()
