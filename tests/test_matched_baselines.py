"""``bert-lrp evaluate`` scores each perturbation method with its default baseline and with the one
that matches the metrics' deletion ([MASK]), side by side (issue 30): ``occlusion`` and
``occlusion[baseline=mask]``."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bert_lrp.evaluation import variants

from conftest import FIXTURES

SHIPPED = FIXTURES.parents[1] / "checkpoints" / "minilm-sst2"
DATA = FIXTURES / "sst2" / "dev_sample.tsv"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bert_lrp", *args], capture_output=True, text=True, timeout=600)


def test_a_variant_names_its_method_and_baseline():
    assert variants.parse("shap[baseline=mask]") == ("shap", {"shap_baseline": "mask"})
    assert variants.parse("lrp") == ("lrp", {})
    with pytest.raises(ValueError, match="only shap, lime, occlusion take a baseline"):
        variants.parse("lrp[baseline=mask]")
    with pytest.raises(ValueError, match=r"METHOD\[baseline=VALUE\]"):
        variants.parse("shap[mask]")


def test_each_perturbation_method_gets_its_matched_variant_unless_it_already_uses_mask():
    assert variants.with_matched_baselines(["lrp", "shap", "occlusion"], {}) == \
        ["lrp", "shap", "shap[baseline=mask]", "occlusion", "occlusion[baseline=mask]"]
    assert variants.with_matched_baselines(["shap"], {"shap_baseline": "mask"}) == ["shap"]
    assert variants.with_matched_baselines(["lime", "lime[baseline=mask]"], {}) == ["lime", "lime[baseline=mask]"]


def test_evaluate_scores_the_default_and_the_matched_baseline_side_by_side(tmp_path):
    common = ["--model", str(SHIPPED), "--data", str(DATA), "--limit", "3", "--no-progress", "--threads", "1"]
    both = run("evaluate", *common, "--methods", "occlusion", "--out", str(tmp_path / "both"))
    assert both.returncode == 0, both.stderr
    summary = json.loads((tmp_path / "both" / "results.json").read_text())
    assert list(summary["methods"]) == ["occlusion", "occlusion[baseline=mask]", "random"]
    assert "| occlusion[baseline=mask] |" in (tmp_path / "both" / "results.md").read_text()
    # the variant is the method run with that option, to the digit
    alone = run("evaluate", *common, "--methods", "occlusion", "--occlusion-baseline", "mask",
                "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    matched = json.loads((tmp_path / "alone" / "results.json").read_text())
    assert set(matched["methods"]) == {"occlusion", "random"}  # already matched: no variant added
    assert summary["methods"]["occlusion[baseline=mask]"] == matched["methods"]["occlusion"]
    assert summary["methods"]["occlusion"] != matched["methods"]["occlusion"]
    plain = run("evaluate", *common, "--methods", "occlusion", "--no-matched-baselines", "--out", str(tmp_path / "p"))
    assert plain.returncode == 0, plain.stderr
    assert set(json.loads((tmp_path / "p" / "results.json").read_text())["methods"]) == {"occlusion", "random"}
