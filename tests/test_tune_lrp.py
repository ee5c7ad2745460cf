"""``bert-lrp tune-lrp``: the search for a model's most faithful LRP composite, the file it writes
(``lrp_composite.json``), ``--rule tuned`` / ``lrp:tuned`` reading it, and the guards that keep
tuning texts out of the evaluation.

The command runs on the shipped SST-2 model (a copy of its folder per test) with a few texts of the
SST-2 dev sample, split into a "train" and an "eval" file, and a small budget.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bert_lrp import explain
from bert_lrp.attribution.road import Request, explain_texts
from bert_lrp.evaluation import tuning as T
from bert_lrp.models.auto import AutoModelForSequenceClassification
from bert_lrp.models.loading import load_model
from bert_lrp.models.tuned import COMPOSITE_FILE, TunedComposite, read_tuned_composite, text_key, write_tuned_composite
from bert_lrp.rules.composites import ATTNLRP
from bert_lrp.rules.linear import Gamma

from conftest import FIXTURES

SHIPPED = FIXTURES.parents[1] / "checkpoints" / "minilm-sst2"
SMALL = ["--examples", "10", "--budget", "3", "--min-words", "4", "--no-progress", "--threads", "1"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bert_lrp", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder with the shipped model's files but no tuned composite (weights linked, not copied)."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(SHIPPED / name, folder / name)
    (folder / "model.safetensors").symlink_to(SHIPPED / "model.safetensors")
    return folder


@pytest.fixture
def split(tmp_path: Path):
    """``(train, eval)``: the first 100 and the next 100 rows of the SST-2 dev sample."""
    lines = (FIXTURES / "sst2" / "dev_sample.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    train, held_out = tmp_path / "train.tsv", tmp_path / "eval.tsv"
    train.write_text("\n".join([header, *rows[:100]]) + "\n", encoding="utf-8")
    held_out.write_text("\n".join([header, *rows[100:200]]) + "\n", encoding="utf-8")
    return train, held_out


def tune(model_dir: Path, train: Path, *extra: str) -> subprocess.CompletedProcess:
    return run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL, *extra)


# ------------------------------------------------------------------ refusing the evaluation data
def test_tune_lrp_refuses_the_evaluation_file(model_dir, split):
    train, _ = split
    result = tune(model_dir, train, "--eval-data", str(train))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "is the evaluation file" in result.stderr
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "model.safetensors", "tokenizer_config.json",
                                                            "vocab.txt"]  # nothing written


def test_tune_lrp_refuses_tuning_data_that_shares_a_text_with_the_evaluation_data(model_dir, split, tmp_path):
    train, held_out = split
    leaky = tmp_path / "leaky.tsv"
    leaky.write_text(held_out.read_text(encoding="utf-8") + train.read_text(encoding="utf-8").splitlines()[5] + "\n",
                     encoding="utf-8")
    result = tune(model_dir, train, "--eval-data", str(leaky))
    assert result.returncode == 2
    assert "1 of its texts are also in --eval-data" in result.stderr
    assert not (model_dir / COMPOSITE_FILE).exists()
    # --drop-shared: the shared text is left out of the sample (here every eligible text is drawn)
    shared_text = train.read_text(encoding="utf-8").splitlines()[5].split("\t")[0]
    kept = run("tune-lrp", "--model", str(model_dir), "--data", str(train), "--eval-data", str(leaky), "--drop-shared",
               "--examples", "1000", "--budget", "1", "--min-words", "4", "--no-progress", "--threads", "1")
    assert kept.returncode == 0, kept.stderr
    assert "left out 1 texts" in kept.stderr
    tuned = read_tuned_composite(model_dir)
    assert text_key(shared_text) not in tuned.tuning_texts and len(tuned.tuning_texts) > 50


def test_evaluate_refuses_the_tuned_composite_on_its_tuning_texts(model_dir, split, tmp_path):
    train, held_out = split
    assert tune(model_dir, train, "--eval-data", str(held_out)).returncode == 0
    refused = run("evaluate", "--model", str(model_dir), "--data", str(train), "--methods", "lrp:tuned",
                  "--out", str(tmp_path / "refused"), "--no-progress")
    assert refused.returncode == 2 and "were used to tune" in refused.stderr
    assert not (tmp_path / "refused").exists()
    also = run("evaluate", "--model", str(model_dir), "--data", str(train), "--methods", "lrp", "--rule", "tuned",
               "--out", str(tmp_path / "refused"), "--no-progress")
    assert also.returncode == 2 and "were used to tune" in also.stderr
    held = run("evaluate", "--model", str(model_dir), "--data", str(held_out), "--methods", "lrp:tuned,lrp:attnlrp",
               "--limit", "6", "--out", str(tmp_path / "held-out"), "--no-progress", "--threads", "1")
    assert held.returncode == 0, held.stderr
    summary = json.loads((tmp_path / "held-out" / "results.json").read_text())
    assert set(summary["methods"]) == {"lrp:tuned", "lrp:attnlrp", "random"}


# ------------------------------------------------------------------ determinism and resuming
def test_the_same_seed_gives_the_same_composite_and_scores(model_dir, split, tmp_path):
    train, _ = split
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    for out in (first, second):
        result = tune(model_dir, train, "--out", str(out))
        assert result.returncode == 0, result.stderr
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["composite"] == b["composite"]
    assert [s["means"] for s in a["search"]] == [s["means"] for s in b["search"]]
    assert a["tuning"]["text_keys"] == b["tuning"]["text_keys"]
    other = tmp_path / "other-seed.json"
    assert tune(model_dir, train, "--out", str(other), "--seed", "1").returncode == 0
    assert json.loads(other.read_text())["tuning"]["text_keys"] != a["tuning"]["text_keys"]


def assert_same_means(rows, expected_rows) -> None:
    """The search records' means, row by row, equal to float rounding (1e-9 relative)."""
    assert len(rows) == len(expected_rows)
    for row, expected in zip(rows, expected_rows):
        assert row["means"] == pytest.approx(expected["means"], rel=1e-9, abs=1e-12)


def test_an_interrupted_search_resumes_from_its_log(model_dir, split, tmp_path):
    train, _ = split
    out = tmp_path / "c.json"
    assert tune(model_dir, train, "--out", str(out), "--no-confirm").returncode == 0
    complete = json.loads(out.read_text())
    log = Path(str(out) + ".search.jsonl")
    lines = log.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    log.write_text("".join(lines[:2]) + lines[2][:20])  # killed while writing the third record
    out.unlink()
    resumed = tune(model_dir, train, "--out", str(out), "--no-confirm")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(out.read_text())["composite"] == complete["composite"]
    # the same scores; the perturbed rows a rescored candidate shares with the candidates read from the log
    # are forwarded in other batches (other padding) than in the first run: equal to float rounding
    assert_same_means(json.loads(out.read_text())["search"], complete["search"])
    assert len(log.read_text().splitlines()) == 3  # only the missing candidate was scored again
    more = run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL, "--budget", "4", "--out", str(out),
               "--no-confirm")
    assert more.returncode == 0, more.stderr  # a larger budget continues the same search
    assert len(log.read_text().splitlines()) == 4
    assert_same_means(json.loads(out.read_text())["search"][:3], complete["search"])
    changed = tune(model_dir, train, "--out", str(out), "--no-confirm", "--min-se", "2")
    assert changed.returncode == 2 and "other settings.min_se (1.0 -> 2.0)" in changed.stderr


# ------------------------------------------------------------------ --rule tuned
def test_rule_tuned_explains_with_the_composite_written_beside_the_model(model_dir):
    """``--rule tuned``, ``rule="tuned"``, ``lrp:tuned`` and the road all use lrp_composite.json."""
    composite = T.Point(softmax="detach", lower=Gamma(gamma=0.3), lower_layers=2).composite()
    write_tuned_composite(model_dir, TunedComposite(composite, frozenset({text_key("a tuning text")})))
    tuned = read_tuned_composite(model_dir)
    assert tuned.composite == composite and tuned.tuning_texts == {text_key("a tuning text")}
    assert AutoModelForSequenceClassification.from_pretrained(model_dir).tuned_composite == tuned
    model, tokenizer = load_model(model_dir)
    text = "a gripping , beautifully acted film"
    batch = tokenizer([text])
    by_name = explain(model, batch, ["lrp"], rule="tuned").scores["lrp"]
    assert torch.equal(by_name, explain(model, batch, ["lrp"], rule=composite).scores["lrp"])
    assert torch.equal(by_name, explain(model, batch, ["lrp:tuned"]).scores["lrp:tuned"])
    assert not torch.allclose(by_name, explain(model, batch, ["lrp"], rule="attnlrp").scores["lrp"])
    [through_road] = explain_texts(model, tokenizer, [text], Request(methods=["lrp"], options={"rule": "tuned"}))
    [alone] = explain_texts(model, tokenizer, [text], Request(methods=["lrp"], options={"rule": composite}))
    # the same arithmetic; float32 products may differ in the last bit between two runs (the
    # allocator's alignment picks the vector path), far below what tells two composites apart
    for name in ("tokens", "words"):
        assert through_road.record()["scores"]["lrp"][name] == pytest.approx(alone.record()["scores"]["lrp"][name],
                                                                              rel=1e-6, abs=1e-7)
    written = model_dir.parent / "explained.json"
    cli = run("explain", "--model", str(model_dir), "--rule", "tuned", "--json", str(written), "--quiet", text)
    assert cli.returncode == 0, cli.stderr
    payload = json.loads(written.read_text())
    assert payload["settings"]["options"]["rule"] == "tuned"
    for name in ("tokens", "words"):
        assert payload["examples"][0]["scores"]["lrp"][name] == pytest.approx(alone.record()["scores"]["lrp"][name],
                                                                              rel=1e-6, abs=1e-7)


def test_rule_tuned_without_a_tuned_composite_is_a_one_line_error(model_dir):
    result = run("explain", "--model", str(model_dir), "--rule", "tuned", "a fine film")
    assert result.returncode == 2
    assert "no tuned LRP composite" in result.stderr and result.stderr.count("\n") == 1


def test_a_damaged_composite_file_breaks_only_lrp_tuned_naming_the_file_and_field(model_dir):
    """Issue 30: the model loads and every other method works; ``--rule tuned`` names the file and field.
    (This test asserted that the whole model was refused, the behaviour the issue calls a bug.)"""
    good = {"format": "bert-lrp tuned composite", "version": 1, "composite": ATTNLRP.to_dict(), "tuning": {}}
    good["composite"]["gamma"] = -1
    (model_dir / COMPOSITE_FILE).write_text(json.dumps(good))
    assert run("explain", "--model", str(model_dir), "a fine film").returncode == 0
    result = run("explain", "--model", str(model_dir), "--rule", "tuned", "a fine film")
    assert result.returncode == 2
    assert COMPOSITE_FILE in result.stderr and "gamma" in result.stderr and result.stderr.count("\n") == 1


def test_save_pretrained_keeps_the_tuned_composite(model_dir, split, tmp_path):
    train, _ = split
    assert tune(model_dir, train).returncode == 0
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.save_pretrained(tmp_path / "saved")
    saved = read_tuned_composite(tmp_path / "saved")
    assert saved.composite == model.tuned_composite.composite
    assert "weights_changed" not in saved.tuning and saved.usable(model) == saved.composite  # same weights: kept


# ------------------------------------------------------------------ the search itself
def known_objective(point: T.Point) -> float:
    """A synthetic objective, best at gamma 0.3 in the first 2 layers with the detached softmax."""
    gamma = point.lower.gamma if isinstance(point.lower, Gamma) else 0.1
    return 0.5 + 0.1 * (point.softmax == "detach") + 0.05 * isinstance(point.lower, Gamma) \
        - 0.02 * abs(point.lower_layers - 2) - 0.03 * abs(math.log10(gamma / 0.3))


def noiseless(point: T.Point, part: str):
    value = known_objective(point)
    return {"abpc_p": value, "comprehensiveness_aopc": 0.0, "sufficiency_aopc": 0.0}, [value, value]


def test_the_search_finds_the_best_point_of_a_known_objective_and_keeps_its_budget():
    """The grids and the coordinate descent reach the known best; no candidate is scored twice;
    the budget holds."""
    seen = []
    result = T.search(lambda p, part: (seen.append((part, p.key())), noiseless(p, part))[1], layers=6, budget=200)
    assert (result.best.point.softmax, result.best.point.lower, result.best.point.lower_layers) == \
        ("detach", Gamma(gamma=0.3), 2)
    assert len(seen) == len(set(seen)) and result.stopped == "converged"
    assert result.confirmation["confirmed"] and result.chosen == result.best.point
    small = T.search(noiseless, layers=6, budget=5)
    assert len([s for s in small.log if s.part == T.SEARCH]) == 5 and small.stopped == "budget"


def noisy(point: T.Point, part: str, gains: dict, examples: int = 200):
    """Per-example ABPC: a spread of base values, plus the point's true gain from ``gains`` (by
    describe()), plus noise of its own: +-0.05 on each example in a seeded order, half of each sign,
    so that the noise moves the per-example differences (paired standard error about 0.005) but
    not their mean."""
    seed = int(hashlib.sha256(f"{part}|{point.key()}".encode()).hexdigest()[:8], 16)
    signs = torch.tensor([1.0, -1.0]).repeat(examples // 2)[torch.randperm(examples, generator=torch.Generator()
                                                                              .manual_seed(seed))]
    values = (torch.linspace(0.3, 0.7, examples, dtype=torch.float64) + gains.get(point.describe(), 0.0)
              + 0.05 * signs.double()).tolist()
    return {"abpc_p": sum(values) / examples, "comprehensiveness_aopc": 0.0, "sufficiency_aopc": 0.0}, values


def test_a_gain_below_one_standard_error_does_not_move_the_search():
    """A true gain of 0.003 under paired noise of about 0.005 is not kept; one of 0.05 is, and is
    confirmed on the other half."""
    within_noise = T.search(lambda p, part: noisy(p, part, {"softmax=detach": 0.003}), layers=6, budget=200)
    assert within_noise.best is within_noise.start and within_noise.chosen == T.Point()
    [detached] = [s for s in within_noise.log if s.point.describe() == "softmax=detach"]
    difference, error = T.gain(detached, within_noise.start)
    assert difference == pytest.approx(0.003) and error > 0.003  # it was scored, and lost to its noise
    kept = T.search(lambda p, part: noisy(p, part, {"softmax=detach": 0.05}), layers=6, budget=200)
    assert kept.best.point.describe() == "softmax=detach" and kept.confirmation["confirmed"]
    assert kept.chosen == kept.best.point


def test_a_winner_not_confirmed_on_the_other_half_is_not_written():
    """A gain seen on the search half only (a fit to those texts) is refused at the confirmation."""
    def objective(point, part):
        return noisy(point, part, {"softmax=detach": 0.05} if part == T.SEARCH else {})
    result = T.search(objective, layers=6, budget=200)
    assert result.best.point.describe() == "softmax=detach"
    assert not result.confirmation["confirmed"] and result.chosen == T.Point()


def test_the_tuning_sample_is_seeded_and_skips_short_and_repeated_texts():
    data = [("one two three", None), ("a b c d e f g h", None), ("a b c d e f g h", None)] + \
           [(f"text number {i} has enough words here", None) for i in range(20)]
    first = T.sample_texts(data, 5, 6, seed=0)
    assert first == T.sample_texts(data, 5, 6, seed=0) and first != T.sample_texts(data, 5, 6, seed=1)
    assert 0 not in first and not {1, 2} <= set(first)
    assert all(len(data[i][0].split()) >= 6 for i in first)


def test_a_texts_key_ignores_surrounding_spaces():
    assert text_key(" a film ") == text_key("a film") != text_key("a film .")


def test_the_explorer_offers_the_tuned_composite_of_a_model_that_has_one(model_dir, tmp_path):
    """``lrp:tuned`` in the explorer: the model's info says whether it has one; explaining with it
    equals explain(rule=composite); a model without one answers 400 naming tune-lrp."""
    from starlette.testclient import TestClient

    from bert_lrp.views.explorer.app import create_app
    from bert_lrp.views.explorer.explorer import Explorer

    plain = tmp_path / "plain"
    shutil.copytree(model_dir, plain, symlinks=True)
    composite = T.Point(softmax="detach").composite()
    write_tuned_composite(model_dir, TunedComposite(composite))
    explorer = Explorer([(model_dir, *load_model(model_dir)), (plain, *load_model(plain))])
    try:
        client = TestClient(create_app(explorer))
        models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
        assert [models[n]["tuned_lrp"] for n in sorted(models)] == [True, False]  # "model", "plain"
        text = "a gripping , beautifully acted film"
        answer = client.post("/api/explain", json={"text": text, "methods": ["lrp:tuned"], "model": "model"})
        assert answer.status_code == 200, answer.text
        model, tokenizer = load_model(model_dir)
        [expected] = explain_texts(model, tokenizer, [text], Request(methods=["lrp"], options={"rule": composite}))
        got = answer.json()["examples"][0]["scores"]["lrp:tuned"]["tokens"]
        assert got == pytest.approx(expected.record()["scores"]["lrp"]["tokens"], abs=1e-6)
        refused = client.post("/api/explain", json={"text": text, "methods": ["lrp:tuned"], "model": "plain"})
        assert refused.status_code == 400 and "tune-lrp" in refused.json()["error"]
    finally:
        explorer.close()
