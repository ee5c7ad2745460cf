"""The guards of the tuned composite (issue 30): overrides checked against the model, the weights'
digest checked, tuning texts found after normalising, one search per output at a time, the search
log's rows checked when read, and a damaged ``lrp_composite.json`` breaking only ``lrp:tuned``.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bert_lrp import explain
from bert_lrp.errors import RequestError
from bert_lrp.models.auto import AutoModelForSequenceClassification
from bert_lrp.models.loading import load_model
from bert_lrp.models.tuned import (COMPOSITE_FILE, TunedComposite, read_tuned_composite, weights_digest,
                                   write_tuned_composite)
from bert_lrp.output import output_lock
from bert_lrp.rules.composites import ATTNLRP, LinearOverride

from conftest import FIXTURES

SMALL = ["--examples", "6", "--budget", "2", "--min-words", "4", "--no-progress", "--threads", "1"]
TEXT = "a gripping , beautifully acted film ."


from test_tune_lrp import model_dir, run  # noqa: E402,F401  (the shipped model's folder fixture; the CLI)


@pytest.fixture
def train(tmp_path: Path) -> Path:
    lines = (FIXTURES / "sst2" / "dev_sample.tsv").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "train.tsv"
    path.write_text("\n".join(lines[:41]) + "\n", encoding="utf-8")
    return path


def with_overrides(*overrides: LinearOverride):
    return replace(ATTNLRP, name="checked", linear_overrides=overrides)


# ------------------------------------------------------------------ overrides against the model
def test_overrides_beyond_the_depth_or_matching_no_layer_are_refused_naming_the_field(model_dir):
    model, tokenizer = load_model(model_dir)  # 6 encoder layers
    batch = tokenizer([TEXT])
    with pytest.raises(RequestError) as beyond:
        explain(model, batch, ["lrp"], rule=with_overrides(LinearOverride("gamma", layers=(4, 12))))
    assert beyond.value.field == "options.rule" and "linear_overrides[0].layers [4, 12]" in str(beyond.value)
    assert "6 encoder layers" in str(beyond.value)
    with pytest.raises(RequestError, match=r"linear_overrides\[1\].*matches no linear layer"):
        explain(model, batch, ["lrp"], rule=with_overrides(LinearOverride("gamma", layers=(0, 2)),
                                                           LinearOverride("gamma", kinds=("embeddings",))))
    with pytest.raises(ValueError, match=r"layers must be whole layer numbers .*\[0.5, 1.7\]"):
        with_overrides(LinearOverride("gamma", layers=(0.5, 1.7)))
    fits = with_overrides(LinearOverride("gamma", layers=(5, 6)), LinearOverride("gamma", layers=(0.0, 2.0)))
    assert fits.linear_overrides[1].layers == (0, 2)  # whole numbers written as floats are whole numbers
    explain(model, batch, ["lrp"], rule=fits)


def test_a_tuned_composite_with_an_override_beyond_the_depth_is_refused_by_rule_tuned(model_dir):
    write_tuned_composite(model_dir, TunedComposite(with_overrides(LinearOverride("gamma", layers=(4, 12)))))
    result = run("explain", "--model", str(model_dir), "--rule", "tuned", TEXT)
    assert result.returncode == 2 and "linear_overrides[0].layers [4, 12]" in result.stderr
    assert result.stderr.count("\n") == 1


# ------------------------------------------------------------------ the weights' digest
def test_changed_weights_refuse_lrp_tuned_naming_both_digests_and_other_methods_still_work(model_dir, tmp_path):
    model, tokenizer = load_model(model_dir)
    tuned_on = weights_digest(model.state_dict())
    write_tuned_composite(model_dir, TunedComposite(replace(ATTNLRP, name="tuned", softmax="detach"),
                                                    record={"tuning": {"weights_sha256": tuned_on}}))
    model, tokenizer = load_model(model_dir)
    batch = tokenizer([TEXT])
    explain(model, batch, ["lrp:tuned"])  # the weights it was tuned on: used
    with torch.no_grad():
        model.classifier.weight.add_(0.01)  # fine-tuned a little further, in memory
    changed = weights_digest(model.state_dict())
    with pytest.raises(RequestError) as refused:
        explain(model, batch, ["lrp:tuned"])
    assert tuned_on in str(refused.value) and changed in str(refused.value)
    assert "weights_sha256" in str(refused.value)
    explain(model, batch, ["lrp", "gi"])  # every other method works
    # save_pretrained of the changed weights marks the copy: reloaded, lrp:tuned is refused naming both
    model.save_pretrained(tmp_path / "saved")
    saved = read_tuned_composite(tmp_path / "saved")
    assert saved.tuning["weights_changed"] == {"tuned_on": tuned_on, "saved": changed}
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    with pytest.raises(RequestError, match=f"{tuned_on}.*{changed}"):
        explain(reloaded, batch, ["lrp:tuned"])
    explain(reloaded, batch, ["lrp"])


def test_a_composite_of_an_earlier_version_is_checked_by_the_weights_files_fingerprint(model_dir):
    record = {"tuning": {"model_sha256": "0123456789abcdef"}}  # version 2 files recorded the file's fingerprint
    write_tuned_composite(model_dir, TunedComposite(replace(ATTNLRP, name="tuned", softmax="detach"), record=record))
    result = run("explain", "--model", str(model_dir), "--rule", "tuned", TEXT)
    assert result.returncode == 2 and "0123456789abcdef" in result.stderr and "model_sha256" in result.stderr
    assert run("explain", "--model", str(model_dir), TEXT).returncode == 0


# ------------------------------------------------------------------ a damaged file
def test_a_damaged_composite_file_lets_the_model_load_and_only_lrp_tuned_names_the_file_and_field(model_dir):
    (model_dir / COMPOSITE_FILE).write_text(json.dumps({"format": "bert-lrp tuned composite", "version": 3,
                                                        "composite": {"name": "tuned", "softmax": "sideways"}}))
    model, tokenizer = load_model(model_dir)
    batch = tokenizer([TEXT])
    explain(model, batch, ["lrp", "gi", "lrp:cp-lrp"])
    with pytest.raises(RequestError) as refused:
        explain(model, batch, ["lrp:tuned"])
    assert COMPOSITE_FILE in str(refused.value) and "softmax" in str(refused.value)
    (model_dir / COMPOSITE_FILE).write_text("{not json")
    result = run("evaluate", "--model", str(model_dir), "--data", str(FIXTURES / "sst2" / "dev_sample.tsv"),
                 "--methods", "lrp:tuned", "--limit", "2", "--out", str(model_dir.parent / "run"), "--no-progress")
    assert result.returncode == 2 and COMPOSITE_FILE in result.stderr and "not a readable JSON" in result.stderr
    assert not (model_dir.parent / "run").exists()


# ------------------------------------------------------------------ overlap by normalised text
def disguised(text: str) -> str:
    """The same text to an uncased tokenizer: upper case, doubled spaces, no space before the full stop."""
    return "  ".join(text.upper().split()).replace(" .", ".")


def test_tuning_texts_are_found_after_normalising_case_spacing_and_punctuation(model_dir, train, tmp_path):
    rows = train.read_text(encoding="utf-8").splitlines()
    header, first = rows[0], rows[1].split("\t")
    assert disguised(first[0]) != first[0]
    leaky = tmp_path / "leaky.tsv"
    leaky.write_text(f"{header}\n{disguised(first[0])}\t{first[1]}\n", encoding="utf-8")
    refused = run("tune-lrp", "--model", str(model_dir), "--data", str(train), "--eval-data", str(leaky), *SMALL)
    assert refused.returncode == 2 and "1 of its texts are also in --eval-data" in refused.stderr
    assert run("tune-lrp", "--model", str(model_dir), "--data", str(train), "--eval-data", str(leaky), "--drop-shared",
               *SMALL, "--examples", "100", "--no-confirm").returncode == 0
    # evaluate lrp:tuned on a disguised tuning text
    tuned = read_tuned_composite(model_dir)
    drawn = next(r for r in rows[1:] if tuned.overlap([r.split("\t")[0]]))
    disguised_file = tmp_path / "disguised.tsv"
    disguised_file.write_text(f"{header}\n{disguised(drawn.split(chr(9))[0])}\t{drawn.split(chr(9))[1]}\n",
                              encoding="utf-8")
    result = run("evaluate", "--model", str(model_dir), "--data", str(disguised_file), "--methods", "lrp:tuned",
                 "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 2 and "1 of its texts were used to tune" in result.stderr


# ------------------------------------------------------------------ one search at a time, the log checked
def test_a_second_search_on_the_same_output_is_refused_at_once(model_dir, train):
    with output_lock(model_dir / COMPOSITE_FILE):
        result = run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL)
    assert result.returncode == 1 and "another bert-lrp process is writing this output" in result.stderr
    assert not (model_dir / (COMPOSITE_FILE + ".search.jsonl")).exists()


def test_edited_scores_in_the_search_log_are_refused_naming_the_line(model_dir, train):
    assert run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL, "--no-confirm").returncode == 0
    log = model_dir / (COMPOSITE_FILE + ".search.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    edited = dict(rows[1], means={**rows[1]["means"], "abpc_p": rows[1]["means"]["abpc_p"] + 0.05})
    log.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], edited]))
    refused = run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL, "--no-confirm")
    assert refused.returncode == 1 and "line 2: field 'digest'" in refused.stderr
    # the digest removed too: the mean no longer matches the per-example scores
    del edited["digest"]
    log.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], edited]))
    refused = run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL, "--no-confirm")
    assert refused.returncode == 1 and "line 2: field 'means.abpc_p'" in refused.stderr
    assert "is not the mean of its per-example abpc" in refused.stderr


def test_a_search_log_of_an_earlier_search_version_is_refused_naming_the_setting(model_dir, train):
    """The grid of version 4 (per-layer attention rules) takes another path than version 3's: a log
    written by version 3 is refused, not resumed into a mixed search (``--overwrite`` discards it)."""
    assert run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL, "--no-confirm").returncode == 0
    run_file = model_dir / (COMPOSITE_FILE + ".search.json")
    record = json.loads(run_file.read_text())
    assert record["settings"]["search"] == "stages+coordinate descent v4"
    run_file.write_text(json.dumps({**record, "settings": {**record["settings"],
                                                           "search": "stages+coordinate descent v3"}}))
    refused = run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL, "--no-confirm")
    assert refused.returncode != 0 and "settings.search" in refused.stderr and "v3" in refused.stderr
    assert refused.stderr.count("\n") == 1
    again = run("tune-lrp", "--model", str(model_dir), "--data", str(train), *SMALL, "--no-confirm", "--overwrite")
    assert again.returncode == 0, again.stderr
