"""``benchmarks/bench_issue31.py --quick`` (issue 31's table) runs end to end in its own process and
writes its JSON and markdown: every entry timed in every cell, ratios to the floor (not the times:
the machine is shared)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRIES = {"floor", "lxt", "attnlrp", "cp-lrp", "tuned", "gs+gi+lrp", "gs+gi+lrp bound", "two presets", "bert-lrp",
           "bert-lrp bound"}

pytestmark = pytest.mark.slow


def test_quick_issue31_benchmark_writes_json_and_markdown(tmp_path):
    # its own process: LXT patches torch.nn.LayerNorm while it runs
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_issue31.py"), "--quick", "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "issue31.json").read_text())
    assert result["info"]["quick"] is True and result["info"]["rounds"] == 2
    assert [(row["batch"], row["length"]) for row in result["rows"]] == [(1, 8), (2, 16)]
    for row in result["rows"]:
        assert set(row["median_s"]) == ENTRIES
        assert all(len(times) == 2 and min(times) > 0 for times in row["times_s"].values())
        assert row["ratio"]["floor"] == pytest.approx(1.0)
        assert set(row["derived"]) == {"gs+gi+lrp / attnlrp", "two presets / attnlrp", "gs+gi+lrp / bound",
                                       "bert-lrp / bound", "attnlrp / lxt"}
    markdown = (tmp_path / "issue31.md").read_text()
    assert markdown.startswith("# Issue 31: cost in times the floor")
    assert "| 1x8 |" in markdown and "| 2x16 |" in markdown
