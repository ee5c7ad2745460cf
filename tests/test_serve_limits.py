"""The explorer bounded and cancellable (issue 29), on the Explorer itself (the API without a server):

* every explain is planned first: forward rows x tokens, group by group in the order the stream runs
  them, against the explorer's budget; over it -> 413 naming the option to lower (or ``methods``);
  one forward chunk's rows x tokens stays under the memory bound;
* ``explain_stream`` emits plan, progress, one group per group of methods, and a done document equal
  to ``explain``'s; a run is cancelled between forward chunks (its event, Ctrl-C's ``cancel_all``)
  and the next request is answered at once;
* uploads: the same per-text limits (16 windows, the budget) naming the line, a bounded name, a
  bounded total of rows held, deletable data sets, cancellable jobs;
* smaller cases: an empty pair, row numbers that are not ASCII digits in range;
* data-set metrics (accuracy, confusion matrix, confidence histogram) and the filters they drive;
  the words table without stop words / punctuation, with a minimum count;
* attention one head at a time; the all-heads overview pooled to a bounded size.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
import torch

from bert_lrp import cli
from bert_lrp.attribution import registry
from bert_lrp.attribution.progress import Cancelled
from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer import attention_view, limits
from bert_lrp.views.explorer.explorer import ApiError, Explorer
from bert_lrp.views.explorer.stopwords import STOP_WORDS

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)

WORDS13 = "the film is great and a bad movie is not very good ."  # 13 words


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("limits") / "sequence")


@pytest.fixture(scope="module")
def explorer(folder):
    explorer = Explorer([(folder, *load_model(folder))])
    yield explorer
    explorer.close()


def refused(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as error:
        call(*args, **kwargs)
    return error.value


# ------------------------------------------------------------------ the plan and the budget
def test_the_plan_counts_rows_times_tokens_per_group_in_run_order(explorer):
    body = {"text": "the film is unbelievable", "methods": ["occlusion", "lrp", "gi", "shap"]}
    plan = explorer.plan(body)
    # the shared-pass methods run together first, then every other method alone, in the order asked
    assert [g["methods"] for g in plan["groups"]] == [["lrp", "gradient_x_input"], ["occlusion"], ["shap"]]
    tokens = 8  # [CLS] the film is un ##believ ##able [SEP]
    words = 4
    assert plan["tokens"] == tokens
    occlusion, shap = plan["groups"][1], plan["groups"][2]
    assert occlusion["rows"] == 1 + (words + 1)  # its forward, then the text and each word left out
    assert shap["rows"] == 1 + 2 ** words       # exact Shapley values: every coalition
    assert plan["rows"] == sum(g["rows"] for g in plan["groups"])
    assert plan["cost"] == plan["rows"] * tokens and all(g["cost"] == g["rows"] * tokens for g in plan["groups"])
    assert plan["budget"] == limits.DEFAULT_BUDGET and plan["within_budget"] is True


def test_seconds_come_from_this_explorers_measured_throughput(folder):
    fresh = Explorer([(folder, *load_model(folder))])
    try:
        body = {"text": "a great film", "methods": ["lrp", "occlusion"]}
        assert fresh.plan(body)["seconds"] is None  # nothing measured yet
        fresh.explain(body)
        plan = fresh.plan(body)
        assert plan["seconds"] > 0 and all(g["seconds"] > 0 for g in plan["groups"])
        doubled = fresh.plan({**body, "text": "a great film and a bad movie"})
        assert doubled["seconds"] / doubled["cost"] == pytest.approx(plan["seconds"] / plan["cost"], rel=0.05)
    finally:
        fresh.close()


def test_twenty_exact_shap_words_are_refused_naming_the_option_and_the_budget(explorer):
    text = " ".join(["good", "film", "bad", "movie", "very"] * 4)  # 20 words: 2^20 rows
    body = {"text": text, "methods": ["shap"], "options": {"shap_exact_words": 20}}
    error = refused(explorer.explain, body)
    assert (error.status, error.field) == (413, "options.shap_exact_words")
    assert f"{limits.DEFAULT_BUDGET:,}" in str(error) and "1,048,577 rows" in str(error)
    events = []
    assert refused(explorer.explain_stream, body, events.append).status == 413 and events == []  # no stream
    plan = explorer.plan(body)  # the plan still tells what it would cost, and why it is refused
    assert plan["within_budget"] is False and plan["field"] == "options.shap_exact_words"
    assert plan["cost"] > plan["budget"]
    fewer = explorer.explain({**body, "options": {"shap_exact_words": 12}})
    assert fewer["settings"]["options"]["shap_exact_words"] == 12


def test_over_budget_with_default_options_names_the_methods(folder):
    small = Explorer([(folder, *load_model(folder))], budget=100)
    try:
        error = refused(small.explain, {"text": "the film is unbelievable", "methods": ["shap"]})
        assert (error.status, error.field) == (413, "methods") and "budget is 100" in str(error)
        assert small.explain({"text": "good", "methods": ["lrp"]})["examples"]  # a cheap request still runs
    finally:
        small.close()


def test_one_forward_chunk_stays_under_the_memory_bound(explorer):
    error = refused(explorer.explain, {"text": "a great film", "methods": ["ig"], "options": {"ig_batch": 4096}})
    assert (error.status, error.field) == (413, "options.ig_batch")
    error = refused(explorer.explain, {"text": "a film", "methods": ["shap"], "options": {"rows_per_forward": 4096}})
    assert error.field == "options.rows_per_forward"
    error = refused(explorer.explain, {"text": "a film", "methods": ["ig"], "options": {"ig_batch": "4096"}})
    assert error.field == "options.ig_batch"  # a number written as text is read as the plan reads it
    # a default that would not fit is lowered for a long text (the settings say the value used)
    bounded = limits.chunk_options({}, ["ig", "lrp"], 512)
    assert bounded == {"ig_batch": limits.CHUNK_ROW_TOKENS // 512} and bounded["ig_batch"] * 512 <= 7_680
    assert limits.chunk_options({}, ["ig"], 8) == {}  # a short text keeps the default (64 rows)
    assert registry.get("ig").options[2].maximum * 512 > 100 * limits.CHUNK_ROW_TOKENS  # the CLI's range is far above


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize("body", [
    {"text": "the film is unbelievable", "methods": ["lrp", "gi", "gs", "occlusion", "shap", "ig"],
     "options": {"ig_steps": 5}},
    {"text": "a film", "pair": "very good and moved", "methods": ["lime", "lrp"], "target": "all",
     "options": {"lime_samples": 30}},
    {"text": "not boring , very good", "methods": ["smoothgrad", "gi"], "options": {"smoothgrad_samples": 3}},
])
def test_the_stream_runs_each_group_and_its_done_document_equals_explain(explorer, body):
    events = []
    done = explorer.explain_stream(body, events.append)
    kinds = [event["event"] for event in events]
    assert kinds[0] == "plan" and kinds[-1] == "done" and kinds.count("done") == 1
    plan = events[0]
    groups = [event for event in events if event["event"] == "group"]
    assert [g["methods"] for g in groups] == [g["methods"] for g in plan["groups"]]
    for group in groups:  # each group's document holds its methods only, with its views
        assert group["payload"]["examples"][0]["methods"] == group["methods"]
        assert set(group["payload"]["views"]) == {"html", "layers", "agreement"}
    progress = [event for event in events if event["event"] == "progress"]
    assert all(p["rows_total"] == plan["rows"] for p in progress)
    assert [p["rows_done"] for p in progress] == sorted(p["rows_done"] for p in progress)
    alone = explorer.explain(body)
    assert json.loads(json.dumps(done)) == json.loads(json.dumps(alone))  # the same document, views included
    assert events[-1]["payload"] is done


def test_progress_events_come_at_most_five_a_second(explorer):
    events = []
    explorer.explain_stream({"text": WORDS13, "methods": ["shap"], "options": {"shap_exact_words": 13,
                                                                              "rows_per_forward": 8}}, events.append)
    times = [e for e in events if e["event"] == "progress"]
    assert len(times) >= 1
    # 8,192 rows in chunks of 8 is ~1,000 chunks: the events are throttled, not one per chunk
    assert len(times) < 1_000 / 10


def count_forwards(model):
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(time.monotonic()))
    return calls, handle


def test_a_cancelled_shap_of_13_words_stops_within_a_chunk_and_the_next_request_runs(explorer):
    entry = explorer.models[explorer.default]
    cancel = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if event["event"] == "progress" and event["rows_done"] > 0:
            cancel.set()  # the client goes away once the run is under way

    body = {"text": WORDS13, "methods": ["shap"], "options": {"shap_exact_words": 13, "rows_per_forward": 16}}
    calls, handle = count_forwards(entry.model)
    try:
        explorer.explain_stream(body, emit, cancel)
        forwards_at_cancel = len(calls)
    finally:
        handle.remove()
    assert events[-1] == {"event": "cancelled"} and "done" not in [e["event"] for e in events]
    total_chunks = 2 ** 13 // 16 + 2
    assert forwards_at_cancel < total_chunks / 4  # stopped long before the 8,192 rows were run
    started = time.monotonic()
    assert explorer.explain({"text": "good film", "methods": ["lrp"]})["examples"][0]["text"] == "good film"
    assert time.monotonic() - started < 5


def test_explain_with_its_event_set_is_cancelled_and_cancel_all_stops_a_run(explorer):
    body = {"text": WORDS13, "methods": ["shap"], "options": {"shap_exact_words": 13, "rows_per_forward": 4}}
    cancel = threading.Event()
    cancel.set()
    assert refused(explorer.explain, body, cancel).status == 503
    outcome = {}

    def run():
        try:
            outcome["answer"] = explorer.explain(body)
        except ApiError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not explorer._runs and time.monotonic() < deadline:  # the run is under way
        time.sleep(0.005)
    explorer.cancel_all()  # Ctrl-C
    thread.join(30)
    assert not thread.is_alive() and outcome["error"].status == 503 and "cancelled" in str(outcome["error"])


# ------------------------------------------------------------------ smaller cases
def test_an_empty_pair_is_refused_naming_the_pair(explorer):
    for body in ({"text": "a film", "pair": ""}, {"text": "a film", "pair": "  "}):
        error = refused(explorer.explain, body)
        assert (error.status, error.field) == (400, "pair")
        assert refused(explorer.plan, body).field == "pair"


def test_a_lone_surrogate_is_a_400_naming_its_field(explorer):
    error = refused(explorer.explain, {"text": "a \ud800 film"})
    assert (error.status, error.field) == (400, "text")


@pytest.fixture(scope="module")
def data(folder, tmp_path_factory):
    """A data set of ``explain --jsonl`` with gold labels (one text could not be explained)."""
    root = tmp_path_factory.mktemp("data")
    texts = root / "texts.tsv"
    texts.write_text("sentence\tlabel\na great film\tpositive\nthe bad movie\tnegative\nthe film is unbelievable\t"
                     "positive\nvery good and great\tpositive\nthe film is not boring .\tnegative\n"
                     "a bad film\tnegative\n")
    out = root / "out.jsonl"
    assert cli.main(["explain", "--model", str(folder), "--file", str(texts), "--jsonl", str(out),
                     "--methods", "lrp,gi", "--quiet"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    with out.open("a") as file:  # a malformed record: its row reports why, the others answer
        file.write(json.dumps({"index": 7, "source": "x", "text": "broken", "prediction": 3}) + "\n")
    return out, records


@pytest.fixture
def data_explorer(folder, data):
    explorer = Explorer([(folder, *load_model(folder))], data[0])
    yield explorer
    explorer.close()


@pytest.mark.parametrize("index", ["-1", "١", "1.0", " 1", "7", "99", ""])  # rows 0..6
def test_a_row_number_is_ascii_digits_inside_the_data_set(data_explorer, index):
    error = refused(data_explorer.row, "1", index)
    assert (error.status, error.field) == (404, "index")


def test_row_numbers_in_range_are_answered(data_explorer, data):
    assert data_explorer.row("1", "0")["record"] == data[1][0]
    assert data_explorer.row("1", "5")["record"] == data[1][5]
    broken = data_explorer.row("1", "6")["record"]  # the malformed record is its row's error
    assert broken["text"] == "broken" and "field" in broken["error"] and "line 7" in broken["error"]


def test_an_upload_name_is_at_most_200_characters(data_explorer):
    error = refused(data_explorer.upload, {"name": "n" * 201, "text": "a film\n", "methods": ["gi"]})
    assert (error.status, error.field) == (400, "name")


def test_an_upload_line_over_16_windows_is_refused_naming_the_line(data_explorer):
    text = "a great film\n" + "good " * 40_000 + "\nthe bad movie\n"
    error = refused(data_explorer.upload, {"name": "big.txt", "text": text, "methods": ["gi"]})
    assert (error.status, error.field) == (413, "text")
    assert "line 2" in str(error) and "16 windows" in str(error)
    assert data_explorer.jobs == {}  # nothing started


def test_each_uploaded_text_is_held_to_the_budget(folder):
    small = Explorer([(folder, *load_model(folder))], budget=100_000)  # 13 exact words: 8,193 rows x 15 tokens
    try:
        text = f"good film\n{WORDS13}\n"
        error = refused(small.upload, {"name": "u.txt", "text": text, "methods": ["shap"],
                                       "options": {"shap_exact_words": 13}})
        assert error.status == 413 and error.field == "options.shap_exact_words" and "line 2" in str(error)
    finally:
        small.close()


def wait(explorer, job_id):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = explorer.job(job_id)
        if info["finished"]:
            return info
        time.sleep(0.02)
    raise AssertionError("the job did not finish")


def test_a_data_set_can_be_deleted_and_its_rows_are_gone(data_explorer):
    job = data_explorer.upload({"name": "mine.txt", "text": "a great film\nthe bad movie\n", "methods": ["gi"]})
    info = wait(data_explorer, job["job"])
    new = info["dataset"]
    assert [d["id"] for d in data_explorer.datasets_info()["datasets"]] == ["1", new]
    data_explorer.delete_dataset(new)
    data_explorer.delete_dataset("1")  # the --data set too
    assert data_explorer.datasets_info()["datasets"] == []
    assert refused(data_explorer.rows, new, {}).status == 404
    assert refused(data_explorer.row, "1", "0").status == 404
    assert refused(data_explorer.delete_dataset, new).status == 404


def test_the_rows_held_are_bounded_and_the_refusal_says_how_to_free_them(data_explorer, monkeypatch):
    import bert_lrp.views.explorer.explorer as module

    monkeypatch.setattr(module, "MAX_STORED_ROWS", 8)  # the --data set holds 7 rows
    error = refused(data_explorer.upload, {"name": "two.txt", "text": "a film\nthe movie\n", "methods": ["gi"]})
    assert error.status == 413 and "DELETE /api/datasets/" in str(error)
    data_explorer.delete_dataset("1")
    assert wait(data_explorer, data_explorer.upload({"name": "two.txt", "text": "a film\nthe movie\n",
                                                     "methods": ["gi"]})["job"])["error"] is None


def test_a_job_can_be_cancelled(data_explorer):
    text = "".join(f"{WORDS13}\n" for _ in range(40))
    job = data_explorer.upload({"name": "slow.txt", "text": text, "methods": ["shap"],
                                "options": {"shap_exact_words": 13, "rows_per_forward": 4}})
    data_explorer.cancel_job(job["job"])
    info = wait(data_explorer, job["job"])
    assert info["cancelled"] and info["error"] == "cancelled" and info["dataset"] is None and info["done"] < 40
    assert refused(data_explorer.cancel_job, "nope").status == 404


# ------------------------------------------------------------------ metrics, filters, words
def test_metrics_count_accuracy_confusion_and_confidence(data_explorer, data):
    records = data[1]
    metrics = data_explorer.metrics("1")
    explained = [r for r in records if "error" not in r]
    right = [r for r in explained if r["label"] == r["prediction"]]
    assert (metrics["rows"], metrics["errors"], metrics["with_gold"]) == (7, 1, 6)  # 6 texts, 1 broken record
    assert metrics["accuracy"] == pytest.approx(len(right) / 6)
    assert metrics["labels"] == ["negative", "positive"]
    confusion = metrics["confusion"]
    for g, gold in enumerate(confusion["gold"]):
        for p, predicted in enumerate(confusion["predicted"]):
            expected = sum(1 for r in explained if r["label"] == gold and r["prediction"] == predicted)
            assert confusion["counts"][g][p] == expected
            # a confusion cell filters the table to exactly its rows
            cell = data_explorer.rows("1", {"gold": gold, "label": predicted})
            assert cell["total"] == expected
            assert all((r["gold"], r["prediction"]) == (gold, predicted) for r in cell["rows"])
    histogram = metrics["histogram"]
    assert histogram["edges"][0] == 0.5 and histogram["edges"][-1] == 1.0
    assert sum(histogram["correct"]) == len(right) and sum(histogram["wrong"]) == 6 - len(right)
    assert sum(histogram["no_gold"]) == 0


def test_confidence_filters_match_the_histogram_bars(data_explorer):
    histogram = data_explorer.metrics("1")["histogram"]
    edges = histogram["edges"]
    for i in range(len(edges) - 1):
        low, high = edges[i], edges[i + 1]
        rows = data_explorer.rows("1", {"confidence_min": str(low), "confidence_max": str(high)})["rows"]
        assert all(low <= r["confidence"] <= high for r in rows)
    every = data_explorer.rows("1", {"confidence_min": "0", "confidence_max": "1"})
    assert every["total"] == 6  # the failed row has no confidence
    for bad in ({"confidence_min": "2"}, {"confidence_max": "nan"}, {"confidence_min": "x"}):
        assert refused(data_explorer.rows, "1", bad).field == next(iter(bad))


def test_the_words_table_hides_stop_words_and_punctuation_and_needs_a_minimum_count(data_explorer):
    everything = data_explorer.words("1", {"method": "lrp", "top": "200", "min_count": "1"})["labels"]
    shown = {w["word"] for words in everything.values() for w in words}
    assert shown & STOP_WORDS  # "the", "a", "is" push toward some label
    hidden = data_explorer.words("1", {"method": "lrp", "top": "200", "min_count": "1",
                                       "hide": "stopwords,punctuation"})["labels"]
    kept = {w["word"] for words in hidden.values() for w in words}
    assert kept and not kept & STOP_WORDS and "." not in kept and kept <= shown
    twice = data_explorer.words("1", {"method": "lrp", "top": "200", "min_count": "3"})["labels"]
    assert {w["word"] for words in twice.values() for w in words} <= shown
    assert refused(data_explorer.words, "1", {"hide": "numbers"}).field == "hide"
    assert refused(data_explorer.words, "1", {"min_count": "0"}).field == "min_count"


def test_the_stop_words_are_english_function_words_without_negations():
    assert {"the", "a", "of", "is", "and"} <= STOP_WORDS
    assert not {"not", "no", "never", "very", "good", "bad"} & STOP_WORDS


# ------------------------------------------------------------------ attention
def test_the_overview_has_every_head_pooled_with_rows_that_still_sum_to_one(explorer):
    short = explorer.attention_overview({"text": "a great film"})
    assert (short["layers"], short["heads"], short["size"]) == (2, 4, 5) and short["labels"] == short["tokens"]
    head = explorer.attention({"text": "a great film", "layer": 1, "head": 2})["attention"]
    thumbnail = short["thumbnails"][1][2]  # unpooled: the head itself, to 3 decimals
    assert [len(row) for row in thumbnail] == [5] * 5
    assert all(t == pytest.approx(v, abs=1e-3) for t_row, v_row in zip(thumbnail, head) for t, v in zip(t_row, v_row))
    text = " ".join(["the film is great and a bad movie"] * 6)  # 50 tokens
    pooled = explorer.attention_overview({"text": text})
    assert pooled["size"] == attention_view.MAX_THUMBNAIL and len(pooled["labels"]) == pooled["size"]
    assert "…" in pooled["labels"][0]
    for layer in pooled["thumbnails"]:
        for thumbnail in layer:
            assert len(thumbnail) == pooled["size"] and all(abs(sum(row) - 1) < 0.02 for row in thumbnail)


def test_the_overview_of_a_510_token_text_is_well_under_a_megabyte():
    torch.manual_seed(0)
    attentions = torch.softmax(torch.randn(12, 12, 510, 510) * 3, -1)  # a BERT-base: 12 layers x 12 heads
    answer = attention_view.overview([f"token{i}" for i in range(510)], attentions)
    assert len(json.dumps(answer).encode()) < 700_000


def test_attention_needs_a_text_that_fits_and_a_head_that_exists(explorer):
    too_long = " ".join(["good"] * 80)
    assert refused(explorer.attention, {"text": too_long, "layer": 0, "head": 0}).field == "text"
    assert refused(explorer.attention_overview, {"text": too_long}).field == "text"
    assert refused(explorer.attention, {"text": "a film", "layer": 2, "head": 0}).field == "layer"
    assert refused(explorer.attention, {"text": "a film", "layer": 0, "head": "1"}).field == "head"


# ------------------------------------------------------------------ the road's hook
class Counting:
    """A run's hook that counts the rows it is told of and cancels after ``stop_after`` calls."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    def rows(self, n):
        self.calls.append(n)
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise Cancelled("stop")


@pytest.mark.parametrize("method, options, chunk", [
    ("shap", {"shap_exact_words": 13, "rows_per_forward": 512}, 512),
    ("integrated_gradients", {"ig_steps": 40, "ig_batch": 16}, 16),
    ("smoothgrad", {"smoothgrad_samples": 30, "rows_per_forward": 8}, 8),
    ("occlusion", {"rows_per_forward": 4}, 4),
    ("lime", {"lime_samples": 40, "rows_per_forward": 16}, 16),
])
def test_the_road_tells_its_hook_of_every_chunk_and_stops_where_it_raises(folder, method, options, chunk):
    from bert_lrp.attribution.road import Request, TextInput, explain_texts, stream_texts

    model, tokenizer = load_model(folder)
    hook = Counting()
    explain_texts(model, tokenizer, [WORDS13], methods=[method], options=options, progress=hook)
    assert max(hook.calls[:-1]) <= chunk and len(hook.calls) >= 3  # per chunk, then the shared pass's batch
    stopped = Counting(stop_after=2)
    with pytest.raises(Cancelled):
        explain_texts(model, tokenizer, [WORDS13], methods=[method], options=options, progress=stopped)
    assert len(stopped.calls) == 2  # nothing ran after the chunk whose hook raised
    going_on = Counting(stop_after=1)  # a data set's run goes on past failed texts, never past a cancel
    with pytest.raises(Cancelled):
        list(stream_texts(model, tokenizer, [TextInput(WORDS13, None, "t")] * 2,
                          Request(methods=[method], options=options), go_on=True, progress=going_on))


def test_true_and_false_still_mean_the_progress_bar(folder):
    from bert_lrp.attribution.road import explain_texts

    model, tokenizer = load_model(folder)
    [quiet] = explain_texts(model, tokenizer, ["a film"], methods=["lrp"], progress=False)
    [shown] = explain_texts(model, tokenizer, ["a film"], methods=["lrp"], progress=True)
    assert quiet.record() == shown.record()


def test_an_error_during_a_streamed_run_is_its_last_event_and_the_next_run_goes_on(explorer, monkeypatch):
    import bert_lrp.views.explorer.explorer as module

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    events = []
    with monkeypatch.context() as patch:
        patch.setattr(module, "explain_texts", broken)
        explorer.explain_stream({"text": "a film", "methods": ["lrp"]}, events.append)
    assert [e["event"] for e in events] == ["plan", "error"]
    assert events[-1] == {"event": "error", "status": 500, "error": "internal error: RuntimeError: boom second line",
                          "field": None}
    events.clear()
    explorer.explain_stream({"text": "a film", "methods": ["lrp"]}, events.append)
    assert events[-1]["event"] == "done"
