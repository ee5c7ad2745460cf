"""A file of texts can be a table (GLUE's layout): a tab-separated header naming a ``sentence``
(``sentence1``, ``text``) column, with optional ``sentence2``/``pair`` and ``label`` columns. Every
road reads it the same way (``explain --file``, ``--jsonl``, the explorer's upload): the text
column is the text, the pair column its pair, the label is kept as the record's gold ``label``;
any other file is one text per line, tabs included."""
from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from bert_lrp import cli
from bert_lrp.attribution.road import TextInput, parse_texts
from bert_lrp.data import DataError
from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer, row_summary

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)


def test_a_table_gives_texts_pairs_and_labels_with_their_lines():
    content = "sentence1\tsentence2\tlabel\na film\tvery good\t1\n\nthe movie\tis fine\tpositive\n"
    assert parse_texts(content, "pairs.tsv") == [
        TextInput("a film", "very good", "pairs.tsv, line 2", "1"),
        TextInput("the movie", "is fine", "pairs.tsv, line 4", "positive")]
    assert parse_texts("sentence\tlabel\r\nit is good \t1\r\n", "sst2.tsv") == [
        TextInput("it is good", None, "sst2.tsv, line 2", "1")]  # cells are stripped, as every command reads them
    for row in ("\t\t0", "the movie\t\tpositive"):  # a row without its text or pair is refused, naming its line
        with pytest.raises(DataError, match=r"pairs\.tsv, line 2: the (pair )?text is empty"):
            parse_texts("sentence1\tsentence2\tlabel\n" + row + "\n", "pairs.tsv")


def test_other_files_are_one_text_per_line_tabs_included():
    assert parse_texts("a film\tvery good\nthe movie\n", "plain.txt", pair="p") == [
        TextInput("a film\tvery good", "p", "plain.txt, line 1"), TextInput("the movie", "p", "plain.txt, line 2")]
    with pytest.raises(DataError, match=r"x\.tsv, line 1: no text column .*; the header has: label, sentence_id"):
        parse_texts("label\tsentence_id\n1\t2\n", "x.tsv")  # a .tsv naming no text column is refused


def test_explain_jsonl_keeps_the_gold_label_and_the_explorer_scores_correctness(tmp_path):
    model = make_model_dir(tmp_path / "model")
    table = tmp_path / "dev.tsv"
    table.write_text("sentence\tlabel\na great film\t1\nthe bad movie\t0\nnot good\tpositive\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli.main(["explain", "--model", str(model), "--file", str(table), "--jsonl", str(out),
                     "--methods", "gi", "--quiet"]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["text"], r["label"], r["source"]) for r in records] == [
        ("a great film", "1", f"{table}, line 2"), ("the bad movie", "0", f"{table}, line 3"),
        ("not good", "positive", f"{table}, line 4")]
    golds = [row_summary(i, r)["gold"] for i, r in enumerate(records)]
    assert golds == ["positive", "negative", "positive"]  # ids named by the model's labels
    assert [row_summary(i, r)["correct"] for i, r in enumerate(records)] == [
        g == r["prediction"] for g, r in zip(golds, records)]

    # the explorer's upload reads the same table the same way
    client = TestClient(create_app(Explorer([(model, *load_model(model))])))
    job = client.post("/api/datasets", json={"name": "dev.tsv", "text": table.read_text(), "methods": ["gi"]}).json()
    while not job["finished"]:
        job = client.get(f"/api/jobs/{job['job']}").json()
    rows = client.get(f"/api/datasets/{job['dataset']}/rows").json()["rows"]
    assert [(r["text"], r["gold"]) for r in rows] == [(r["text"], g) for r, g in zip(records, golds)]


def test_stdin_is_read_the_same_way_as_a_file(tmp_path, monkeypatch):
    import io
    import sys

    from bert_lrp.attribution.road import read_inputs

    table = "sentence\tlabel\na great film\t1\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(table))
    assert read_inputs(["-"]) == [TextInput("a great film", None, "stdin, line 2", "1")]
