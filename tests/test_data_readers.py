"""One reader package, ``bert_lrp.data``, reads every input file of every command (docs/inputs.md).

* A table is one table for everyone: ``explain`` (``--json``), ``evaluate`` and ``tune-lrp``
  (their data reader), ``train``, ``inspect`` and the explorer's upload get the same texts and
  labels from it, whatever the case and spacing of its column names, and refuse a table naming no
  text column with the same line naming the columns seen.
* Hostile files get one line naming the file, the line (and the field), never a traceback, and
  records read back are checked field by field before anyone uses them.
* Nothing outside ``bert_lrp/data/`` opens a file for reading or reads stdin (the exceptions are
  listed below with their reason).
"""
from __future__ import annotations

import ast
import copy
import io
import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from starlette.testclient import TestClient

from bert_lrp import cli
from bert_lrp.data import (DataError, TextInput, parse_texts, read_conll, read_explanations, read_file_inputs,
                           read_inputs, read_table)
from bert_lrp.errors import RequestError
from bert_lrp.evaluation.faithfulness import read_data_examples
from bert_lrp.inspection.embeddings import read_sentences
from bert_lrp.models.loading import load_model
from bert_lrp.training.data import read_examples
from bert_lrp.training.trainer import TrainConfig
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer, read_dataset

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)

PACKAGE = Path(__file__).resolve().parents[1] / "bert_lrp"
ROWS = [("a great film", "1"), ("the bad movie", "0")]
TABLES = {  # the same two rows, written three ways
    "headed.tsv": "Sentence\tLabel\na great film\t1\nthe bad movie\t0\n",
    "upper.csv": "TEXT,label\na great film,1\nthe bad movie,0\n",
    "spaced.txt": " sentence \t LABEL \na great film\t1\nthe bad movie\t0\n",  # a .txt whose first line is a header
}
NO_TEXT_COLUMN = "Label\tId\n1\t2\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def explorer(model):
    explorer = Explorer([(model, *load_model(model))])
    yield explorer
    explorer.close()


def explain_json(model: Path, path: Path, tmp_path: Path) -> List[Tuple[str, str]]:
    out = tmp_path / "out.json"
    assert cli.main(["explain", "--model", str(model), "--file", str(path), "--json", str(out), "--methods", "gi",
                     "--quiet"]) == 0
    return [(r["text"], r["label"]) for r in json.loads(out.read_text(encoding="utf-8"))["examples"]]


def upload(explorer: Explorer, name: str, text: str) -> List[Tuple[str, str]]:
    client = TestClient(create_app(explorer))
    answer = client.post("/api/datasets", json={"name": name, "text": text, "methods": ["gi"]})
    if answer.status_code >= 400:
        return answer.json()
    job = answer.json()
    while not job["finished"]:
        job = client.get(f"/api/jobs/{job['job']}").json()
    assert job["error"] is None, job
    return [(r["text"], r["label"]) for r in explorer.datasets[job["dataset"]].records]


def train_examples(path: Path):
    config = TrainConfig(train_file=str(path))
    return read_examples(path, "sequence", text_column=config.text_column, label_column=config.label_column,
                         pair_column=config.pair_column)


# ------------------------------------------------------------------ one table, one reading
@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_command_reads_the_same_texts_and_labels_from_a_table(name, model, explorer, tmp_path):
    path = tmp_path / name
    path.write_text(TABLES[name], encoding="utf-8")
    assert explain_json(model, path, tmp_path) == ROWS                                 # explain --json
    assert [(e.text, e.label) for e in read_data_examples(str(path))] == ROWS         # evaluate, tune-lrp
    assert [(e.text, e.label) for e in train_examples(path)] == ROWS                  # train
    assert read_sentences(str(path)) == [text for text, _ in ROWS]                    # inspect embeddings
    assert upload(explorer, name, TABLES[name]) == ROWS                               # the explorer's upload


def test_a_table_naming_no_text_column_is_refused_by_everyone_with_the_same_line(model, explorer, tmp_path, capsys):
    path = tmp_path / "ids.tsv"
    path.write_text(NO_TEXT_COLUMN, encoding="utf-8")
    line = f"{path}, line 1: no text column (a table needs one named sentence, sentence1 or text); " \
           "the header has: Label, Id"
    for read in (read_data_examples, train_examples, read_sentences, lambda p: read_inputs(file=p)):
        with pytest.raises(DataError) as refused:
            read(str(path))
        assert str(refused.value) == line
    assert cli.main(["explain", "--model", str(model), "--file", str(path), "--json", str(tmp_path / "o.json")]) == 1
    assert capsys.readouterr().err == f"bert-lrp explain: error: {line}\n"
    answer = upload(explorer, "ids.tsv", NO_TEXT_COLUMN)
    assert answer["error"] == line.replace(str(path), "ids.tsv") and answer["field"] == "text"


def test_which_file_is_a_table():
    assert parse_texts("a great film\t1\nthe bad movie\t0\n", "plain.txt") == [  # no known column: lines, tabs kept
        TextInput("a great film\t1", None, "plain.txt, line 1"), TextInput("the bad movie\t0", None, "plain.txt, line 2")]
    assert parse_texts("sentence,label\na film,1\n", "notes.txt")[0].text == "sentence,label"  # commas only in .csv
    with pytest.raises(DataError, match=r"^x\.txt, line 1: no text column .*the header has: label, id$"):
        parse_texts("label\tid\n1\t2\n", "x.txt")  # header-like (names a known column) but no text column
    with pytest.raises(DataError, match=r"^y\.csv, line 1: no text column .*the header has: a great film$"):
        parse_texts("a great film\n", "y.csv")  # a .csv is always a table
    assert parse_texts('{"Text": "fine", "label": 1}\n', "r.jsonl") == [TextInput("fine", None, "r.jsonl, line 1", "1")]


def test_explicit_columns_are_matched_like_the_known_ones(tmp_path):
    path = tmp_path / "nli.tsv"
    path.write_text(" Premise \tHYPOTHESIS\tGold\na film\tis fine\tyes\n", encoding="utf-8")
    [example] = read_table(path, text_column="premise", pair_column="hypothesis", label_column="gold")
    assert (example.text, example.pair, example.label, example.line) == ("a film", "is fine", "yes", 2)


# ------------------------------------------------------------------ hostile files
def read_as_table(path):
    return read_table(path, label_optional=True)


READERS = {"lines": lambda p: read_file_inputs(p), "table": read_as_table, "conll": read_conll,
           "records": read_explanations}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("content, message", [
    (b"sentence\tlabel\ngood\t1\nb\xe9d\t0\n", r"line 3: not valid UTF-8 \(byte 0xe9 at column 2\)$"),
    (b"sentence\tlabel\ngo\x00od\t1\n", r"line 2: a NUL byte at column 3: a binary file, not text$"),
])
def test_bytes_that_are_no_text_name_file_line_and_column(reader, content, message, tmp_path):
    path = tmp_path / "hostile.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match="^" + re.escape(str(path)) + ", " + message):
        READERS[reader](path)


def test_line_ends_and_a_byte_order_mark_are_read_as_text(tmp_path):
    path = tmp_path / "windows.tsv"
    path.write_bytes(b"\xef\xbb\xbfsentence\tlabel\r\na great film\t1\r\n")
    assert [(e.text, e.label) for e in read_table(path)] == [("a great film", "1")]
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfa great film\r\nthe bad movie\r\n")
    assert [i.text for i in read_file_inputs(path)] == ["a great film", "the bad movie"]


@pytest.mark.parametrize("name, content, message", [
    ("empty.tsv", "", "empty.tsv: the file is empty"),
    ("blank.tsv", "\n \n", "blank.tsv: the file is empty"),
    ("header.tsv", "sentence\tlabel\n", "header.tsv: the file has a header but no examples"),
    ("ragged.tsv", "sentence\tlabel\ngood\t1\nbad\n", "ragged.tsv, line 3: expected 2 fields as in the header, got 1"),
    ("wide.csv", "text,label\ngood,1,2\n", "wide.csv, line 2: expected 2 fields as in the header, got 3"),
    ("twice.tsv", "text\tTEXT\na\tb\n", "twice.tsv, line 1: the column 'text' is named twice in the header"),
    ("quote.csv", 'text,label\n"good,1\n', "quote.csv, line 2: not valid CSV (unexpected end of data)"),
    ("nolabel.tsv", "sentence\tlabel\ngood\t\n", "nolabel.tsv, line 2: the label is empty"),
    ("bad.jsonl", '{"text": "good"}\n[1, 2]\n', "bad.jsonl, line 2: expected a JSON object, got list"),
    ("type.jsonl", '{"text": 3}\n', "type.jsonl, line 1: field 'text' (text) must be a string, got int"),
])
def test_a_malformed_table_is_one_line_naming_file_and_line(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as refused:
        read_as_table(path)
    assert str(refused.value).startswith(f"{tmp_path / name}{message[len(name):]}")


def test_a_label_where_one_is_required(tmp_path):
    path = tmp_path / "unlabelled.tsv"
    path.write_text("sentence\ngood\n", encoding="utf-8")
    assert train_examples_error(path) == f"{path}, line 1: missing label column 'label'; the header has: sentence"
    assert [(e.text, e.label) for e in read_data_examples(str(path))] == [("good", None)]  # evaluate: optional


def train_examples_error(path: Path) -> str:
    with pytest.raises(DataError) as refused:
        train_examples(path)
    return str(refused.value)


def test_a_one_megabyte_line_is_one_text(tmp_path):
    long = "film " * 200_000
    path = tmp_path / "long.txt"
    path.write_text(f"short\n{long}\n", encoding="utf-8")
    assert [len(i.text) for i in read_file_inputs(path)] == [5, len(long)]


def test_paths_that_are_no_file_name_the_request_field(tmp_path):
    with pytest.raises(RequestError) as missing:
        read_inputs(file=str(tmp_path / "nope.txt"))
    assert (missing.value.field, missing.value.message) == ("file", f"{tmp_path / 'nope.txt'}: no such file")
    with pytest.raises(RequestError) as folder:
        read_data_examples(str(tmp_path))
    assert folder.value.field == "data" and "is a folder" in folder.value.message
    with pytest.raises(RequestError) as empty:
        read_inputs(file=str(write(tmp_path / "blank.txt", "\n  \n")))
    assert empty.value.field == "file" and "no text to explain" in empty.value.message


def test_stdin_is_read_as_strictly_as_a_file():
    assert read_inputs(["-"], stdin=io.StringIO("Sentence\tLabel\na film\t1\n")) == [
        TextInput("a film", None, "stdin, line 2", "1")]

    class Bytes:
        buffer = io.BytesIO(b"good\nb\xe9d\n")

    with pytest.raises(DataError, match=r"^stdin, line 2: not valid UTF-8"):
        read_inputs(["-"], stdin=Bytes())


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ records read back
@pytest.fixture(scope="module")
def record(model, tmp_path_factory) -> Dict:
    """A real record of ``explain --jsonl`` (a pair, a gold label, LRP's embedding shares)."""
    folder = tmp_path_factory.mktemp("records")
    table = write(folder / "pairs.tsv", "sentence1\tsentence2\tlabel\na great film\tthe movie\t1\n")
    out = folder / "out.jsonl"
    assert cli.main(["explain", "--model", str(model), "--file", str(table), "--jsonl", str(out),
                     "--methods", "lrp,gi", "--quiet"]) == 0
    [line] = out.read_text(encoding="utf-8").splitlines()
    return json.loads(line)


def records_file(tmp_path: Path, *records) -> Path:
    return write(tmp_path / "data.jsonl", "".join(
        (r if isinstance(r, str) else json.dumps(r, allow_nan=True)) + "\n" for r in records))


def test_records_written_by_explain_jsonl_are_read_back_as_they_are(record, tmp_path):
    failed = {"index": 1, "source": "x, line 3", "text": "??", "error": "too long"}
    assert read_explanations(records_file(tmp_path, record, failed)) == [record, failed]
    ratio = changed(record, "conservation.lrp", float("inf"))  # a ratio over a target logit of exactly 0
    assert read_explanations(records_file(tmp_path, ratio))[0]["conservation"]["lrp"] == float("inf")


def changed(record: Dict, path: str, value) -> Dict:
    """``record`` with the field at the dotted ``path`` set to ``value`` (``DELETE``: removed)."""
    out = copy.deepcopy(record)
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    parent = out
    for key in keys[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[keys[-1]]
    else:
        parent[keys[-1]] = value
    return out


DELETE = object()


@pytest.mark.parametrize("path, value, message", [
    ("index", "3", "field index: must be a whole number, got a string"),
    ("index", -1, "field index: -1 is outside 0.."),
    ("text", ["a"], "field text: must be a string, got a list"),
    ("text", DELETE, "field text: missing"),
    ("pair", 7, "field pair: must be a string, got int"),
    ("label", 1, "field label: must be a string, got int"),
    ("prediction", "neutral", "field prediction: neutral is not a label of probabilities"),
    ("probabilities.positive", "0.5", "field probabilities.positive: must be a number, got a string"),
    ("tokens.1", None, "field tokens[1]: must be a string, got null"),
    ("words.0.word", 1, "field words[0].word: must be a string, got int"),
    ("words.0.pieces", [99], "field words[0].pieces[0]: 99 is outside 0.."),
    ("words.0.sequence", True, "field words[0].sequence: must be a whole number, got true/false"),
    ("methods", ["<script>"], "field methods[0]: '<script>' is not a method name"),
    ("scores.gradient_x_input.tokens", [0.1], "field scores.gradient_x_input.tokens: holds 1 values, expected"),
    ("scores.gradient_x_input.words.0", float("nan"), "field scores.gradient_x_input.words[0]: must be a finite number, got nan"),
    ("scores.gradient_x_input.words.0", float("inf"), "field scores.gradient_x_input.words[0]: must be a finite number, got inf"),
    ("scores.shap", {"tokens": [], "words": []}, "field scores.shap: method shap is not in the record's methods"),
    ("conservation.lrp", True, "field conservation.lrp: must be a number, got true/false"),
    ("embedding_shares.lrp.word", [1.0], "field embedding_shares.lrp.word: holds 1 values, expected"),
    ("target_logit", None, "field target_logit: must be a number, got null"),
    ("target", "all", "field labels: missing"),
    ("attention", {"layer": "1", "head": 1, "matrix": []}, "field attention.layer: must be a whole number"),
    ("attention", {"layer": 1, "head": 1.5, "matrix": []}, "field attention.head: must be a whole number, got float"),
    ("attention", {"layer": 1, "head": 1, "matrix": [[0.5]], "html": "<b>"}, "field attention.html: not a field"),
    ("onclick", "alert(1)", "field onclick: not a field of an explanation record"),
    ("windows", 0, "field windows: 0 is outside 1.."),
])
def test_a_record_with_a_wrong_field_names_file_line_and_field(record, path, value, message, tmp_path):
    data = records_file(tmp_path, record, changed(record, path, value))
    with pytest.raises(DataError) as refused:
        read_explanations(data)
    assert str(refused.value).startswith(f"{data}, line 2: {message}")


@pytest.mark.parametrize("line, message", [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON (nested too deeply)"),
    ("{" + "x" * 1_000_000, "not valid JSON"),
    ('{"index": 0, "source": "s", "text": "t", "error": NaN}', "field error: must be a string, got float"),
    ("17", "not an explanation record (a JSON object expected, got int)"),
])
def test_lines_that_are_no_record_are_one_short_line(line, message, tmp_path):
    data = records_file(tmp_path, line)
    with pytest.raises(DataError) as refused:
        read_explanations(data)
    assert str(refused.value).startswith(f"{data}, line 1: {message}") and len(str(refused.value)) < 300


def test_markup_in_every_string_field_is_kept_as_text_and_drawn_escaped(record, model, tmp_path):
    markup = '<img src=x onerror="alert(1)">'
    hostile = copy.deepcopy(record)
    hostile.update(text=markup, pair=markup, source=markup, label=markup)
    for word in hostile["words"]:
        word["word"] = markup
    hostile["tokens"] = [markup] * len(hostile["tokens"])
    data = records_file(tmp_path, hostile)
    explorer = Explorer([(model, *load_model(model))], data=data)
    try:
        shown = TestClient(create_app(explorer)).get(f"/api/datasets/{1}/rows/0").json()
    finally:
        explorer.close()
    assert shown["record"]["text"] == markup  # the data as it was
    assert "<img" not in shown["views"]["html"] and "&lt;img" in shown["views"]["html"]


def test_a_bad_record_of_the_explorers_data_is_its_rows_error(record, model, tmp_path):
    # issue 29: one malformed --data record must not take the other rows down (it made every row a
    # 500, then refused the whole file): the bad line is that row's error, naming file, line and field
    data = records_file(tmp_path, record, changed(record, "scores.gradient_x_input.words.0", float("nan")))
    good, bad = read_dataset("1", data).records
    assert good == record
    assert re.search(r"data\.jsonl, line 2: field scores\.gradient_x_input\.words\[0\]", bad["error"])
    assert bad["text"] == record["text"] and set(bad) == {"index", "source", "text", "error"}


# ------------------------------------------------------------------ nobody else reads input files
# Modules (or module.function) outside bert_lrp/data/ that may read a file, and why.
MAY_READ = {
    "bert_lrp.models": "model folders: configs, vocabularies, weights, tuned composites, hub references",
    "bert_lrp.tf": "TensorFlow checkpoints",
    "bert_lrp._jsonl": "the writer's own JSON lines read back to resume a run, and its lock file",
    "bert_lrp.output": "the one writer: an existing output's first bytes (its kind), its lock file, the fingerprints "
                       "of a run's files and its own run records (resume)",
    "bert_lrp.cli.stream._line_of": "the writer's resume: the line of a record in its own output",
    "bert_lrp.training.trainer": "the trainer's own checkpoints (resume) and its manifest",
    "bert_lrp._peak_memory.status_kb": "/proc/self/status (memory measurement)",
    "bert_lrp.evaluation.benchmark.machine_info": "/proc/cpuinfo (the machine in the report)",
    "bert_lrp.evaluation.benchmark.run_lxt": "the result its LXT worker process wrote",
    "bert_lrp.evaluation.benchmark.worker_main": "the spec its parent process wrote for the memory worker",
    "bert_lrp.evaluation.peers.lxt_runner": "a separate process reading the files its parent benchmark wrote",
    "bert_lrp.cli.benchmark._run": "prints the report the benchmark has just written",
}
PATH_READS = {"read_text", "read_bytes"}                      # path.read_text()
MODULE_LOADS = {"json", "np", "numpy", "torch", "pickle"}      # json.load(handle), torch.load with weights_only=True, ...
LOADERS = {"load_file", "safe_open"}                           # safetensors


def _reading(node: ast.AST) -> bool:
    """``node`` opens or reads a file, or reads stdin."""
    if isinstance(node, ast.Attribute) and node.attr == "stdin":
        return True
    if not isinstance(node, ast.Call):
        return False
    function = node.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    if isinstance(function, ast.Attribute) and (name in PATH_READS or (
            name in ("load", "fromfile", "loadtxt") and getattr(function.value, "id", "") in MODULE_LOADS)):
        return True
    if name in LOADERS:
        return True
    if name in ("open", "fdopen"):
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
            return "r" in mode.value or "+" in mode.value
        if isinstance(mode, ast.Attribute) or isinstance(mode, ast.BinOp):  # os.open flags
            return "RDONLY" in ast.dump(mode) or "RDWR" in ast.dump(mode)
        return mode is None
    return False


def file_reads(allowed: Dict[str, str] = MAY_READ) -> List[str]:
    """``module.function (line N)`` of every read of a file outside bert_lrp/data/ not in ``allowed``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith("bert_lrp.data"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function, node in _nodes(tree):
            where = f"{module}.{function}" if function else module
            if _reading(node) and not any(where == k or where.startswith(k + ".") for k in allowed):
                found.append(f"{where} (line {node.lineno})")
    return found


def _nodes(tree: ast.AST):
    """``(outermost function name or "", node)`` for every node of ``tree``."""
    for top in ast.iter_child_nodes(tree):
        name = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ""
        for node in ast.walk(top):
            if isinstance(top, ast.ClassDef) and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{top.name}.{node.name}"
            yield name, node


def test_nothing_outside_the_reader_package_reads_an_input_file():
    assert file_reads() == []


def test_every_exception_still_reads_a_file():
    everything = file_reads({})
    for allowed in MAY_READ:
        assert any(read == allowed or read.startswith((allowed + ".", allowed + " ")) for read in everything), allowed


def test_the_walk_would_see_a_reader_elsewhere():
    tree = ast.parse("import sys, json\n"
                     "def a(p):\n    return open(p).read()\n"
                     "def b(p):\n    return open(p, 'rb')\n"
                     "def c(p):\n    return p.read_text()\n"
                     "def d():\n    return sys.stdin.read()\n"
                     "def e(p):\n    return json.load(open(p, encoding='utf-8'))\n"
                     "def w(p):\n    return open(p, 'w')\n")
    assert sorted({function for function, node in _nodes(tree) if _reading(node)}) == ["a", "b", "c", "d", "e"]


def test_the_reader_package_imports_only_the_base_layer():
    for path in sorted((PACKAGE / "data").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                module = (node.module or "").split(".")[0]
                allowed = node.level == 1 or module in ("errors", "_text")
                assert allowed, f"{path.name} (line {node.lineno}) imports {'.' * node.level}{node.module}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.startswith(("bert_lrp", "torch", "tokenizers")) for n in names), path.name
