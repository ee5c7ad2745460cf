"""``python -m bert_lrp.evaluation.paired``: methods of evaluate runs on the same examples side by
side, with the standard error of each paired difference (the same examples in both columns)."""
from __future__ import annotations

import json
import math

import pytest

from bert_lrp.errors import RequestError, UsageError
from bert_lrp.evaluation.paired import paired, table


def write_run(folder, methods, data="abc", indices=(0, 1, 2)):
    folder.mkdir()
    records = [{"index": i, "methods": {m: {"abpc_p": values[k], "comprehensiveness_aopc": values[k] / 2,
                                            "sufficiency_aopc": 1 - values[k]} for m, values in methods.items()}}
               for k, i in enumerate(indices)]
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"settings": {"data_sha256": data}, "methods": {m: {} for m in methods},
               "cost": {m: {"forward_passes": 1, "backward_passes": 1, "ms": 2.0} for m in methods}}
    (folder / "results.json").write_text(json.dumps(summary))
    return str(folder)


def test_paired_difference_and_its_standard_error():
    mean, error = paired([0.5, 0.7, 0.9], [0.4, 0.5, 0.9])
    differences = [0.1, 0.2, 0.0]
    sd = math.sqrt(sum((d - 0.1) ** 2 for d in differences) / 2)
    assert mean == pytest.approx(0.1) and error == pytest.approx(sd / math.sqrt(3))


def test_two_runs_on_the_same_examples_are_joined_and_compared(tmp_path):
    a = write_run(tmp_path / "a", {"shap": [0.6, 0.7, 0.8]})
    b = write_run(tmp_path / "b", {"lrp:tuned": [0.5, 0.7, 0.9]})
    text = table([a, b], ["shap"])
    row = next(line for line in text.splitlines() if line.startswith("| lrp:tuned"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "0.7000"  # mean ABPC
    assert cells[4].startswith("+0.0000 ± ")  # ABPC - SHAP: differences -0.1, 0, +0.1
    assert cells[4] == f"+0.0000 ± {math.sqrt(0.01) / math.sqrt(3):.4f}"
    assert cells[-1] == "1 + 1, 2.0 ms"


def test_runs_on_other_data_or_other_examples_are_refused(tmp_path):
    a = write_run(tmp_path / "a", {"shap": [0.6, 0.7, 0.8]})
    other_data = write_run(tmp_path / "b", {"lrp": [0.5, 0.7, 0.9]}, data="xyz")
    fewer = write_run(tmp_path / "c", {"lrp": [0.5, 0.7]}, indices=(0, 1))
    for folder in (other_data, fewer):
        with pytest.raises(UsageError, match="same examples"):
            table([a, folder], ["shap"])
    with pytest.raises(RequestError) as caught:
        table([a], ["lime"])
    assert caught.value.field == "against" and caught.value.message.startswith("lime: no run evaluated it")


def test_a_method_of_one_run_can_be_shown_under_another_name(tmp_path):
    a = write_run(tmp_path / "a", {"lrp:tuned": [0.6, 0.7, 0.8]})
    b = write_run(tmp_path / "b", {"lrp:tuned": [0.5, 0.7, 0.9]})
    text = table([a, b], ["lrp:tuned"], renames={(b, "lrp:tuned"): "other model's composite"})
    assert "| other model's composite | 0.7000 |" in text
