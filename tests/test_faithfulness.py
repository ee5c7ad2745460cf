"""Faithfulness metrics against hand-computed values; resuming; 2-process gloo equals 1 process."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bert_lrp import cli
from bert_lrp.cli import evaluate as evaluate_cli
from bert_lrp.evaluation import faithfulness as F

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)

PAD, CLS, SEP, MASK = 0, 2, 3, 4


def bag_of_tokens(weights: dict):
    """A fake classifier: logit(class 1) = sum of the weights of the tokens present, logit(class 0) = 0."""
    table = torch.zeros(64, dtype=torch.float64)
    for token, weight in weights.items():
        table[token] = weight

    def forward(ids, types):
        positive = table[ids].sum(1)
        return torch.stack([torch.zeros_like(positive), positive], -1)
    return forward


def lookup_for(forward):
    def lookup(row):
        ids, types = row
        return forward(torch.tensor([ids]), torch.tensor([types]))[0]
    return lookup


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_counts():
    assert [F.count_for_fraction(s, 4) for s in range(11)] == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    assert [F.count_for_fraction(s, 10) for s in range(11)] == list(range(11))
    assert [F.count_for_fraction(s, 5) for s in range(11)] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # halves round up
    assert [F.count_for_percent(p, 4) for p in F.AOPC_PERCENTS] == [1, 1, 1, 1, 2]
    assert [F.count_for_percent(p, 100) for p in F.AOPC_PERCENTS] == [1, 5, 10, 20, 50]
    assert [F.count_for_percent(p, 30) for p in F.AOPC_PERCENTS] == [1, 2, 3, 6, 15]


def test_ranking_breaks_ties_by_position():
    assert F.ranking([0.5, 2.0, 0.5, -1.0], [1, 2, 3, 4]) == [2, 1, 3, 4]
    assert F.ranking([0.5, 2.0, 0.5, -1.0], [1, 2, 3, 4], most_relevant_first=False) == [4, 1, 3, 2]


def test_curves_abpc_and_aopc_by_hand():
    # tokens 10..13 at positions 1..4 with weights 2, 1, -1, 0.5 (sum 2.5); [MASK] and [PAD] weigh 0
    forward = bag_of_tokens({10: 2.0, 11: 1.0, 12: -1.0, 13: 0.5})
    example = F.Example(0, (CLS, 10, 11, 12, 13, SEP), (0,) * 6, [1, 2, 3, 4], label=1)
    scores = [0.0, 4.0, 3.0, 1.0, 2.0, 0.0]  # order: pos 1, 2, 4, 3
    record = F.example_metrics(example, scores, predicted=1, lookup=lookup_for(forward), pad_id=PAD, mask_id=MASK)
    # masked counts per step for n=4: 0 0 1 1 2 2 2 3 3 4 4
    morf_logit = [2.5, 2.5, 0.5, 0.5, -0.5, -0.5, -0.5, -1.0, -1.0, 0.0, 0.0]
    lerf_logit = [2.5, 2.5, 3.5, 3.5, 3.0, 3.0, 3.0, 2.0, 2.0, 0.0, 0.0]
    assert record["morf_logit"] == pytest.approx(morf_logit)
    assert record["lerf_logit"] == pytest.approx(lerf_logit)
    assert record["morf_p"] == pytest.approx([sigmoid(v) for v in morf_logit])
    assert record["lerf_p"] == pytest.approx([sigmoid(v) for v in lerf_logit])
    # trapezoid, dx = 0.1: MoRF 0.1 * (2.5 - 1.25) = 0.125, LeRF 0.1 * (25 - 1.25) = 2.375
    assert record["abpc_logit"] == pytest.approx(2.375 - 0.125)
    morf_area = 0.1 * (sum(sigmoid(v) for v in morf_logit) - (sigmoid(2.5) + sigmoid(0)) / 2)
    lerf_area = 0.1 * (sum(sigmoid(v) for v in lerf_logit) - (sigmoid(2.5) + sigmoid(0)) / 2)
    assert record["abpc_p"] == pytest.approx(lerf_area - morf_area)
    # k = 1, 1, 1, 1, 2 tokens for 1, 5, 10, 20, 50 %
    p = sigmoid(2.5)
    comprehensiveness = [p - sigmoid(0.5)] * 4 + [p - sigmoid(-0.5)]
    sufficiency = [p - sigmoid(2.0)] * 4 + [p - sigmoid(3.0)]
    assert record["comprehensiveness"] == pytest.approx(comprehensiveness)
    assert record["sufficiency"] == pytest.approx(sufficiency)
    assert record["comprehensiveness_aopc"] == pytest.approx(sum(comprehensiveness) / 5)
    assert record["sufficiency_aopc"] == pytest.approx(sum(sufficiency) / 5)
    assert record["deletion_correct"] is None  # fewer than 10 tokens


def test_word_deletion_by_hand_uses_pad_not_mask():
    weights = [3, 2, 1, 0.5, 0.25, -1, -1, -1, -1, 0.75]  # sum 3.5
    tokens = list(range(10, 20))
    # [MASK] weighs 10: were it used for deletion, every deletion would keep the label
    forward = bag_of_tokens({**dict(zip(tokens, weights)), MASK: 10.0})
    example = F.Example(7, (CLS, *tokens, SEP), (0,) * 12, list(range(1, 11)), label=1)
    scores = [0.0, *weights, 0.0]
    record = F.example_metrics(example, scores, predicted=1, lookup=lookup_for(forward), pad_id=PAD, mask_id=MASK)
    # deleting in order 3, 2, 1, 0.75, 0.5, 0.25, -1 x4: logit 0.5, -1.5, ..., 0 (a tie is class 0)
    assert record["deletion_correct"] == [True] + [False] * 9
    # a wrongly classified example is not part of the deletion test
    wrong = F.Example(8, example.input_ids, example.token_type_ids, example.candidates, label=0)
    assert F.example_metrics(wrong, scores, 1, lookup_for(forward), PAD, MASK)["deletion_correct"] is None


def flat(value, path=()):
    """``[(path, leaf)]`` of nested dicts and lists, so that nested results compare value by value."""
    if isinstance(value, dict):
        return [item for key in sorted(value) for item in flat(value[key], path + (key,))]
    if isinstance(value, (list, tuple)):
        return [item for i, v in enumerate(value) for item in flat(v, path + (i,))]
    return [(path, value)]


def assert_nested_close(actual, expected):
    """Same structure and equal leaves, floats up to pytest.approx's default tolerance (pytest.approx
    itself does not take nested dicts from pytest 9.2 on)."""
    got, want = flat(actual), flat(expected)
    assert [p for p, _ in got] == [p for p, _ in want]
    for (path, a), (_, b) in zip(got, want):
        if isinstance(b, float) and not isinstance(a, bool):
            assert a == pytest.approx(b), path
        else:
            assert a == b, path


def test_evaluate_examples_batches_and_aggregates():
    forward = bag_of_tokens({10: 2.0, 11: 1.0, 12: -1.0, 13: 0.5, 14: -3.0})
    examples = [F.Example(0, (CLS, 10, 11, 12, 13, SEP), (0,) * 6, [1, 2, 3, 4], 1),
                F.Example(1, (CLS, 14, 10, SEP), (0,) * 4, [1, 2], 0)]
    calls = []

    def attribute(group, predicted):
        calls.append(list(predicted))
        return {"oracle": [torch.tensor([0.0, 2.0, 1.0, -1.0, 0.5, 0.0]), torch.tensor([0.0, 3.0, -2.0, 0.0])]}

    records = F.evaluate_examples(examples, ["oracle", F.RANDOM], attribute, forward, PAD, MASK, seed=3)
    assert calls == [[1, 0]]
    assert [r["prediction"] for r in records] == [1, 0]
    assert records[0]["p_prediction"] == pytest.approx(sigmoid(2.5))
    assert records[1]["p_prediction"] == pytest.approx(1 - sigmoid(-1.0))
    direct = F.example_metrics(examples[0], [0.0, 2.0, 1.0, -1.0, 0.5, 0.0], 1, lookup_for(forward), PAD, MASK)
    assert_nested_close(records[0]["methods"]["oracle"], direct)
    # random scores depend only on (seed, index)
    again = F.evaluate_examples(examples[::-1], [F.RANDOM], attribute, forward, PAD, MASK, seed=3)
    assert again[1]["methods"][F.RANDOM] == records[0]["methods"][F.RANDOM]
    summary = F.aggregate(records, ["oracle", F.RANDOM])
    assert summary["examples"] == 2 and summary["accuracy"] == 1.0 and summary["deletion_examples"] == 0
    oracle = summary["methods"]["oracle"]
    assert oracle["abpc_p"] == pytest.approx((records[0]["methods"]["oracle"]["abpc_p"]
                                              + records[1]["methods"]["oracle"]["abpc_p"]) / 2)
    assert oracle["morf_p"][0] == pytest.approx((sigmoid(2.5) + 1 - sigmoid(-1.0)) / 2)
    table = F.markdown_table(summary)
    assert "| oracle |" in table and "| random |" in table
    assert F.curves_svg(summary).startswith("<svg")


def test_read_records_skips_a_torn_line(tmp_path):
    path = tmp_path / "examples.part0.jsonl"
    path.write_text('{"index": 0}\n{"index": 1}\n{"ind', encoding="utf-8")
    assert [r["index"] for r in F.read_records(path)] == [0, 1]
    writer = F.JsonlWriter(path)
    writer.write({"index": 2})
    writer.close()
    assert path.read_text().splitlines() == ['{"index": 0}', '{"index": 1}', '{"index":2}']


# ------------------------------------------------------------------ the command, end to end
def write_data(path: Path, count: int = 14) -> Path:
    sentences = ["the film is great", "a bad movie", "very boring and not good , the movie is bad",
                 "she moved to paris in may", "the unbelievable film is very good", "a movie"]
    lines = ["sentence\tlabel"]
    for i in range(count):
        words = sentences[i % len(sentences)].split()
        text = " ".join(words + words[: i % 5])  # varied lengths, some with >= 10 tokens
        lines.append(f"{text}\t{i % 2}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def setup(tmp_path):
    return make_model_dir(tmp_path / "model"), write_data(tmp_path / "data.tsv")


def arguments(model_dir, data, out, *extra):
    return ["--model", str(model_dir), "--data", str(data), "--methods", "lrp,gi,gs,lat,rollout,ig",
            "--ig-steps", "3", "--batch-size", "4", "--out", str(out), "--no-progress", *extra]


def lines_of(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_writes_outputs(setup, tmp_path, capsys):
    model_dir, data = setup
    out = tmp_path / "run"
    assert evaluate_cli.main(arguments(model_dir, data, out)) == 0
    assert "| LRP |" in capsys.readouterr().out
    for name in ("results.md", "results.json", "curves.svg", "examples.jsonl", "run.json"):
        assert (out / name).is_file()
    summary = json.loads((out / "results.json").read_text())
    assert summary["examples"] == 14
    assert list(summary["methods"]) == ["lrp", "gradient_x_input", "gradient", "lat", "rollout",
                                        "integrated_gradients", "random"]
    records = lines_of(out / "examples.jsonl")
    assert [r["index"] for r in records] == list(range(14))
    assert summary["deletion_examples"] == sum(r["methods"]["lrp"]["deletion_correct"] is not None for r in records)
    assert summary["deletion_examples"] > 0
    # settings changed: refuse to mix runs
    capsys.readouterr()
    assert cli.main(["evaluate", *arguments(model_dir, data, out, "--rule", "cp-lrp")]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and "--overwrite" in err and "Traceback" not in err


def test_evaluate_resumes_without_recomputing(setup, tmp_path, monkeypatch):
    model_dir, data = setup
    full = tmp_path / "full"
    assert evaluate_cli.main(arguments(model_dir, data, full)) == 0

    computed = []
    original = F.evaluate_examples

    def counting(examples, *args, **kwargs):
        computed.extend(x.index for x in examples)
        return original(examples, *args, **kwargs)

    monkeypatch.setattr(F, "evaluate_examples", counting)
    written = []
    real_write = F.JsonlWriter.write

    def interrupted_write(self, record):
        if len(written) == 6:
            self.handle.write('{"index": 99, "torn')  # a half-written line, then the crash
            self.handle.flush()
            raise KeyboardInterrupt
        written.append(record["index"])
        real_write(self, record)

    out = tmp_path / "resumed"
    monkeypatch.setattr(F.JsonlWriter, "write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        evaluate_cli.main(arguments(model_dir, data, out))
    assert len(F.read_records(out / "examples.part0.jsonl")) == 6
    monkeypatch.setattr(F.JsonlWriter, "write", real_write)
    computed.clear()
    assert evaluate_cli.main(arguments(model_dir, data, out)) == 0
    assert sorted(computed) == sorted(set(range(14)) - set(written))  # only the unfinished ones
    part = lines_of(out / "examples.part0.jsonl")
    assert sorted(r["index"] for r in part) == list(range(14))  # no duplicates, nothing torn
    # a third run computes nothing and gives the same summary
    computed.clear()
    assert evaluate_cli.main(arguments(model_dir, data, out)) == 0
    assert computed == []
    assert _close(lines_of(out / "examples.jsonl"), lines_of(full / "examples.jsonl"))


def _close(a, b, tol=1e-5) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= tol * (1 + abs(b))
    return a == b


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one(setup, tmp_path):
    model_dir, data = setup
    single = tmp_path / "single"
    assert evaluate_cli.main(arguments(model_dir, data, single)) == 0
    double = tmp_path / "double"
    port = str(_free_port())
    processes = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, OMP_NUM_THREADS="1")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "bert_lrp.cli", "evaluate", *arguments(model_dir, data, double), "--threads", "1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    parts = {rank: [r["index"] for r in lines_of(double / f"examples.part{rank}.jsonl")] for rank in range(2)}
    assert sorted(parts[0]) == list(range(0, 14, 2)) and sorted(parts[1]) == list(range(1, 14, 2))
    merged, reference = lines_of(double / "examples.jsonl"), lines_of(single / "examples.jsonl")
    assert [r["index"] for r in merged] == list(range(14))
    assert _close(merged, reference)
    summary = json.loads((double / "results.json").read_text())
    expected = json.loads((single / "results.json").read_text())
    assert summary["world_size"] == 2
    assert _close(summary["methods"], expected["methods"])
    assert summary["examples"] == expected["examples"] and summary["deletion_examples"] == expected["deletion_examples"]
