"""The explorer's JSON API (``bert-lrp serve``), without a browser.

* ``/api/models`` and ``/api/methods`` come from the models given and the method registry (a
  method registered in a test shows up with its option).
* ``/api/explain`` returns exactly the ``explain --json`` document of the same request (sequence
  and token classifiers, pairs, ``target: "all"``), plus server-rendered views.
* Every refused request is a 4xx JSON error naming the field; an internal error is a one-line 500
  and the server goes on.
* Texts, pair texts and label names with markup, bidi controls and terminal escapes come back
  escaped in the rendered views: no element or attribute of theirs survives.
* Attention, masked words, the report and the data-set endpoints.
"""
from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from starlette.testclient import TestClient

from bert_lrp import cli
from bert_lrp.attribution import registry
from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)
from test_inspect import hf_mlm  # noqa: E402,F401  (a transformers BertForMaskedLM fixture)

DATASETS = "/api/datasets"
XSS = ['<script>window.__xss=1</script>', '"><img src=x onerror="window.__xss=1">', "\u202eevil\u202c",
       "\x1b[31mred\x1b[0m", "<b>bold</b> & 'quotes'"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return {"sequence": make_model_dir(root / "sequence"), "token": make_model_dir(root / "token", token=True)}


@pytest.fixture(scope="module")
def client(folders, hf_mlm):
    loaded = [(folders["sequence"], *load_model(folders["sequence"])), (folders["token"], *load_model(folders["token"])),
              (hf_mlm[1], *load_model(hf_mlm[1], "masked_lm"))]
    return TestClient(create_app(Explorer(loaded)), raise_server_exceptions=False)


def cli_json(folder: Path, tmp_path: Path, *argv: str) -> dict:
    """``bert-lrp explain --json``'s document; its records' ``source`` made the API's ("text": the
    command line says "argument 1", the only field that names where a text came from)."""
    out = tmp_path / "out.json"
    assert cli.main(["explain", "--model", str(folder), "--json", str(out), "--quiet", *argv]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    for record in document["examples"]:
        assert record["source"] == "argument 1"
        record["source"] = "text"
    return document


def test_models_and_methods_come_from_the_command_line_and_the_registry(client):
    models = client.get("/api/models").json()
    assert [m["name"] for m in models["models"]] == ["sequence", "token", "random-mlm"]
    assert models["default"] == "sequence"
    assert [m["task"] for m in models["models"]] == ["sequence", "token", "masked_lm"]
    assert models["models"][0]["labels"] == ["negative", "positive"]
    methods = client.get("/api/methods").json()
    assert {m["name"] for m in methods["methods"]} == {m.name for m in registry.all_methods()}
    ig = next(m for m in methods["methods"] if m["name"] == "integrated_gradients")
    steps = next(o for o in ig["options"] if o["name"] == "ig_steps")
    assert (steps["flag"], steps["kind"], steps["minimum"]) == ("--ig-steps", "int", 1)
    assert "lrp:attnlrp" in methods["lrp_presets"]


def test_a_method_registered_elsewhere_shows_up_with_its_option(client):
    option = registry.Option("toy_depth", int, 3, "how deep", minimum=1, maximum=9)
    registry.register(registry.Method("toy_serve", "Toy", options=(option,), run=lambda context: None))
    try:
        toy = next(m for m in client.get("/api/methods").json()["methods"] if m["name"] == "toy_serve")
        assert toy["options"][0] == {"name": "toy_depth", "flag": "--toy-depth", "kind": "int", "default": 3,
                                     "minimum": 1, "maximum": 9, "choices": None, "help": "how deep"}
    finally:
        registry.unregister("toy_serve")


@pytest.mark.parametrize("case", ["plain", "pair", "all", "options"])
def test_explain_equals_the_command_lines_json(client, folders, tmp_path, case):
    body = {"model": "sequence", "text": "the film is unbelievable", "methods": ["lrp", "gi", "gs"]}
    argv = ["--methods", "lrp,gi,gs"]
    if case == "pair":
        body["pair"], argv = "a bad movie", argv + ["--pair", "a bad movie"]
    if case == "all":
        body["target"], argv = "all", argv + ["--target", "all"]
    if case == "options":
        body["methods"], body["options"] = ["ig", "lrp"], {"ig_steps": 7, "rule": "cp-lrp"}
        argv = ["--methods", "ig,lrp", "--ig-steps", "7", "--rule", "cp-lrp"]
    answer = client.post("/api/explain", json=body)
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    expected = cli_json(folders["sequence"], tmp_path, *argv, body["text"])
    assert payload["settings"] == expected["settings"]
    assert payload["examples"] == expected["examples"]
    assert set(payload) == {"model", "settings", "examples", "views"} and payload["model"] == "sequence"


def test_explain_a_token_classifier_word_equals_the_command_line(client, folders, tmp_path):
    body = {"model": "token", "text": "the film is in paris", "methods": ["lrp", "gi"], "word": "paris"}
    payload = client.post("/api/explain", json=body).json()
    expected = cli_json(folders["token"], tmp_path, "--methods", "lrp,gi", "--word", "paris", body["text"])
    assert payload["examples"] == expected["examples"]


def test_views_hold_the_heatmaps_layers_and_agreement(client):
    payload = client.post("/api/explain", json={"text": "a great film", "methods": ["lrp", "gi", "gs"]}).json()
    views = payload["views"]
    assert views["html"].count('class="w"') == 3 * 3  # three words, three methods
    # layer scores come with the methods that propagate through the layers (LRP, and GI at every layer)
    assert set(views["layers"]) == {"lrp", "gradient_x_input"}
    assert all(len(scores) == 2 for scores in views["layers"].values())  # two encoder layers
    agreement = views["agreement"]
    assert agreement["methods"] == ["lrp", "gradient_x_input", "gradient"]
    assert [agreement["spearman"][i][i] for i in range(3)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("body, status, field", [
    ({"text": "x", "bogus": 1}, 400, "bogus"),
    ({"methods": ["lrp"]}, 400, "text"),
    ({"text": 3}, 400, "text"),
    ({"text": "   "}, 400, "text"),
    ({"text": "x", "model": "../../etc"}, 404, "model"),
    ({"text": "x", "methods": ["nope"]}, 400, "methods"),
    ({"text": "x", "methods": ["ig"], "options": {"ig_steps": 0}}, 400, "options.ig_steps"),
    ({"text": "x", "options": {"lime_samples": 10 ** 9}}, 400, "options.lime_samples"),
    ({"text": "x", "target": "neutral"}, 400, "target"),
    ({"text": "film " * 2000}, 413, "text"),
    ({"text": "x", "model": "random-mlm"}, 400, "model"),
    ({"text": "a film", "pair": ""}, 400, "pair"),  # was a 500
    ({"text": " ".join(["good film bad movie"] * 5), "methods": ["shap"], "options": {"shap_exact_words": 20}}, 413,
     "options.shap_exact_words"),  # 2^20 forward rows: over the explorer's budget
    ({"text": "x", "methods": ["ig"], "options": {"ig_batch": 4096}}, 413, "options.ig_batch"),  # one chunk's memory
])
def test_refused_requests_name_the_field(client, body, status, field):
    answer = client.post("/api/explain", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["field"] == field and "\n" not in error["error"]


def test_a_body_that_is_not_json_is_refused(client):
    answer = client.post("/api/explain", content=b"{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]


def test_an_internal_error_is_a_one_line_500_and_the_server_goes_on(client, monkeypatch):
    import bert_lrp.views.explorer.explorer as module

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    with monkeypatch.context() as patch:
        patch.setattr(module, "explain_texts", broken)
        answer = client.post("/api/explain", json={"text": "a film"})
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error: RuntimeError: boom second line", "field": None}
    assert client.post("/api/explain", json={"text": "a film"}).status_code == 200


class Elements(HTMLParser):
    """Every start tag and its attribute names."""

    def __init__(self) -> None:
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(name for name, _ in attrs)))


def test_user_text_and_label_names_are_escaped_in_every_view(folders, tmp_path):
    folder = tmp_path / "hostile"
    shutil.copytree(folders["sequence"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": XSS[0], "1": XSS[1]}, {XSS[0]: 0, XSS[1]: 1}
    (folder / "config.json").write_text(json.dumps(config))
    client = TestClient(create_app(Explorer([(folder, *load_model(folder))])))
    text = " ".join(XSS)
    payload = client.post("/api/explain", json={"text": text, "pair": XSS[1], "methods": ["lrp", "gi"],
                                                "target": "all"}).json()
    html = payload["views"]["html"]
    parser = Elements()
    parser.feed(html)
    allowed_tags = {"h2", "h3", "p", "table", "tr", "td", "b", "div", "span", "details", "summary", "svg", "rect",
                    "text", "title", "g", "line"}
    assert {tag for tag, _ in parser.tags} <= allowed_tags
    assert all(not name.startswith("on") for _, names in parser.tags for name in names)
    assert "<script" not in html and "<img" not in html and "\x1b" not in html
    report = client.post("/api/report", json={"examples": payload["examples"]})
    assert report.status_code == 200 and "<script>window" not in report.text and "<img src=x" not in report.text
    assert report.headers["content-disposition"] == 'attachment; filename="bert-lrp-report.html"'
    assert "default-src 'self'" in report.headers["content-security-policy"]


def test_attention_is_sent_one_head_at_a_time(client):
    answer = client.post("/api/attention", json={"text": "a great film", "layer": 1, "head": 3}).json()
    assert (answer["layers"], answer["heads"], answer["layer"], answer["head"]) == (2, 4, 1, 3)
    assert answer["tokens"] == ["[CLS]", "a", "great", "film", "[SEP]"]
    rows = answer["attention"]
    assert len(rows) == 5 and all(abs(sum(row) - 1) < 1e-3 for row in rows)  # each row a distribution
    assert client.post("/api/attention", json={"text": "a great film"}).json()["field"] == "layer"
    assert client.post("/api/attention", json={"text": "a film", "layer": 0, "head": 4}).json()["field"] == "head"


def test_masked_words_on_a_masked_lm(client):
    answer = client.post("/api/mask", json={"model": "random-mlm", "text": "the girl ran to a [MASK] .",
                                            "top_k": 3})
    assert answer.status_code == 200, answer.text
    mask = answer.json()["masks"][0]
    assert len(mask["output"]) == 3 and len(mask["logit_lens"]) == 4  # embedding output + 3 layers
    assert client.post("/api/mask", json={"model": "sequence", "text": "a [MASK]"}).json()["field"] == "model"
    assert client.post("/api/mask", json={"model": "random-mlm", "text": "a [MASK]", "top_k": 99}).status_code == 400


@pytest.fixture(scope="module")
def data_client(folders, tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    texts = folder / "texts.txt"
    texts.write_text("a great film\nthe bad movie\nthe film is unbelievable\n\x01\x02\nvery good and great\n")
    out = folder / "out.jsonl"
    assert cli.main(["explain", "--model", str(folders["sequence"]), "--file", str(texts), "--jsonl", str(out),
                     "--methods", "lrp,gi", "--quiet"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    for record, gold in zip(lines, ["positive", "negative", "positive", None, "positive"]):
        if gold is not None:
            record["label"] = gold
    out.write_text("".join(json.dumps(r) + "\n" for r in lines))
    explorer = Explorer([(folders["sequence"], *load_model(folders["sequence"]))], out)
    return TestClient(create_app(explorer)), lines


def test_a_data_set_is_sortable_and_filterable(data_client):
    client, records = data_client
    info = client.get("/api/datasets").json()["datasets"]
    assert info[0]["id"] == "1" and info[0]["rows"] == 5 and info[0]["has_gold"] and info[0]["methods"] == ["lrp", "gradient_x_input"]
    rows = client.get(f"{DATASETS}/1/rows?sort=confidence&order=desc").json()
    confidences = [r["confidence"] for r in rows["rows"] if r["confidence"] is not None]
    assert rows["total"] == 5 and confidences == sorted(confidences, reverse=True)
    label = records[0]["prediction"]
    by_label = client.get(f"{DATASETS}/1/rows?label={label}").json()["rows"]
    assert by_label and all(r["prediction"] == label for r in by_label)
    correct = client.get(f"{DATASETS}/1/rows?correct=true").json()["rows"]
    assert all(r["gold"] == r["prediction"] for r in correct)
    assert [r["index"] for r in client.get(f"{DATASETS}/1/rows?word=film").json()["rows"]] == [0, 2]
    assert client.get(f"{DATASETS}/1/rows?sort=text").json()["field"] == "sort"
    assert client.get(f"{DATASETS}/1/rows?bogus=1").json()["field"] == "bogus"


def test_a_row_shows_its_record_and_views(data_client):
    client, records = data_client
    row = client.get(f"{DATASETS}/1/rows/2").json()
    assert row["record"] == records[2] and row["views"]["html"].count('class="w"') == 4 * 2
    assert client.get(f"{DATASETS}/1/rows/99").status_code == 404
    assert client.get(f"{DATASETS}/1/rows/-1").status_code == 404  # was the last row
    assert client.get(f"{DATASETS}/1/rows/١").status_code == 404  # an Arabic-Indic digit: was row 1
    assert client.get(f"{DATASETS}/9/rows").status_code == 404


def test_words_pushing_toward_each_label_over_the_data_set(data_client):
    client, records = data_client
    result = client.get(f"{DATASETS}/1/words?method=lrp&top=5").json()
    for label, words in result["labels"].items():
        totals = [w["total"] for w in words]
        assert totals == sorted(totals, reverse=True) and all(t > 0 for t in totals)
    expected = {}
    for record in records:
        if "error" in record:
            continue
        for word, score in zip(record["words"], record["scores"]["lrp"]["words"]):
            expected.setdefault((record["target"], word["word"].lower()), []).append(score)
    for label, words in result["labels"].items():
        for entry in words:
            values = expected[(label, entry["word"])]
            assert len(values) >= 2 and entry["total"] == pytest.approx(sum(values), abs=1e-5)


def test_an_uploaded_file_is_explained_in_a_job(data_client):
    client, _ = data_client
    job = client.post("/api/datasets", json={"name": "mine.tsv", "text": "sentence\tlabel\na great film\tpositive\n"
                                             "the bad movie\tnegative\n", "methods": ["gi"]})
    assert job.status_code == 202
    info = job.json()
    for _ in range(200):
        info = client.get(f"/api/jobs/{info['job']}").json()
        if info["finished"]:
            break
        import time
        time.sleep(0.05)
    assert info["finished"] and info["error"] is None and info["done"] == 2
    rows = client.get(f"{DATASETS}/{info['dataset']}/rows").json()["rows"]
    assert [r["gold"] for r in rows] == ["positive", "negative"]
    too_big = client.post("/api/datasets", json={"text": "a\n" * 2001})
    assert too_big.status_code == 413 and too_big.json()["field"] == "text"


def test_a_float_that_is_not_finite_is_null_not_a_500(folders, tmp_path):
    out = tmp_path / "inf.jsonl"
    assert cli.main(["explain", "--model", str(folders["sequence"]), "--jsonl", str(out), "--methods", "lrp",
                     "--quiet", "a great film"]) == 0
    record = json.loads(out.read_text())
    record["conservation"]["lrp"] = float("inf")  # a target logit of exactly 0
    out.write_text(json.dumps(record) + "\n")  # Python writes Infinity, which is not JSON for a browser
    client = TestClient(create_app(Explorer([(folders["sequence"], *load_model(folders["sequence"]))], out)))
    answer = client.get(f"{DATASETS}/1/rows/0")
    assert answer.status_code == 200 and "Infinity" not in answer.text
    assert answer.json()["record"]["conservation"]["lrp"] is None


def test_models_are_loaded_and_run_on_the_one_model_thread(folders, monkeypatch):
    import concurrent.futures
    import threading

    import bert_lrp.views.explorer.explorer as module

    threads = {"load": [], "run": []}
    real_load, real_explain = module.load_model, module.explain_texts
    monkeypatch.setattr(module, "load_model", lambda *a: (threads["load"].append(threading.get_ident()),
                                                          real_load(*a))[1])
    monkeypatch.setattr(module, "explain_texts", lambda *a, **k: (threads["run"].append(threading.get_ident()),
                                                                  real_explain(*a, **k))[1])
    explorer = Explorer.load([folders["sequence"], folders["token"]])
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # requests arrive on many threads
            answers = list(pool.map(lambda n: explorer.explain({"text": f"a film {n}", "methods": ["gi"]}), range(8)))
        worker = explorer.on_worker(threading.get_ident)
    finally:
        explorer.close()
    assert len(answers) == 8 and len(threads["load"]) == 2 and len(threads["run"]) == 8
    assert set(threads["load"]) == set(threads["run"]) == {worker} and worker != threading.get_ident()
