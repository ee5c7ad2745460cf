"""What the explorer's API does, without the web server: every request is checked here and
answered by the one road (:mod:`bert_lrp.attribution.road`), so the page, the API and the command
line give the same records.

An :class:`Explorer` holds the models given on the command line (loaded once), the data sets
(``--data`` and uploads, :mod:`.datasets`) and the upload jobs. Every model run (explain,
attention, masked words, each chunk of an upload) happens on one worker thread, so runs never
interleave and PyTorch keeps one team of threads: a model that another thread loaded or ran is
about 50 % slower on 2 cores (measured: one sentence, LRP, 22-24 ms from one thread, 34-36 ms once
two threads have used the model). :meth:`Explorer.load` therefore loads the models on that thread
too. Bad requests raise :class:`ApiError` (HTTP status, one line, the field at fault).

Bounded and cancellable (:mod:`.limits`, :mod:`.runs`): every explain is planned first -- forward
rows x tokens against the explorer's budget, 413 naming the option over it -- and runs with a
hook the road calls after every forward chunk, which stops it there when its ``cancelled`` event
is set (a client that went away, the page's Cancel, :meth:`Explorer.cancel_all` on Ctrl-C).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ...attribution import registry
from ...attribution.heatmaps import example_html, short_heading
from ...attribution.plan import Plan, plan_request
from ...attribution.progress import Cancelled
from ...attribution.records import FailedText, TextExplanation, label_views
from ...attribution.road import (DEFAULT_METHODS, Request, TextInput, encode_whole, encoded_batches, explain_texts,
                                 json_payload, model_limit, stream_texts)
from ...attribution.targets import task_of
from ...attribution.transformers_inputs import tokenizer_for_road
from ...data import DataError, check_record, parse_texts
from ...errors import BertLrpError, UsageError
from ...models.loading import load_model
from ..html_report import render_html
from . import attention_view, datasets
from .agreement import agreement
from .checks import EXPLAIN_FIELDS, api_errors, checked, option_info
from .datasets import DataSet, read_dataset, row_summary, word_pushes
from .errors import ApiError
from .limits import (DEFAULT_BUDGET, MAX_NAME, MAX_STORED_BYTES, MAX_STORED_ROWS, MAX_UPLOAD_BYTES, MAX_UPLOAD_LINES,
                     MAX_WINDOWS, TextCost, budget_error, chunk_options, text_cost)
from .runs import Emit, RunProgress, Throughput, merge_explanations

JOB_CHUNK = 16                 # texts of an upload explained per turn of the model worker
MAX_TEXT_CHARACTERS = 200_000
TEXT_FIELDS = {"model": str, "text": str, "pair": (str, type(None))}
log = logging.getLogger("bert_lrp.serve")


@dataclass
class LoadedModel:
    name: str
    folder: Path
    model: Any
    tokenizer: Any

    def info(self) -> Dict[str, Any]:
        config = self.model.config
        task = task_of(self.model)
        return {"name": self.name, "task": task, "family": config.model_type,
                "labels": [config.labels_by_id()[i] for i in sorted(config.labels_by_id())] if task != "masked_lm"
                else [], "max_positions": model_limit(self.model, self.tokenizer),
                "layers": config.num_hidden_layers, "heads": config.num_attention_heads,
                "mask_token": self.tokenizer.mask_token if task == "masked_lm" else None,
                "tuned_lrp": getattr(self.model, "tuned_composite", None) is not None}  # lrp:tuned available


@dataclass
class Job:
    id: str
    total: int
    done: int = 0
    finished: bool = False
    error: Optional[str] = None
    dataset: Optional[str] = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def info(self) -> Dict[str, Any]:
        return {"job": self.id, "done": self.done, "total": self.total, "finished": self.finished,
                "error": self.error, "dataset": self.dataset, "cancelled": self.cancelled.is_set()}


@dataclass(frozen=True)
class Prepared:
    """An explain body checked against its model: the text, its encoding, the plan, its cost."""

    entry: "LoadedModel"
    item: TextInput
    body: Dict[str, Any]
    options: Dict[str, Any]
    plan: Plan
    cost: TextCost


def model_names(folders: Sequence[Path]) -> List[str]:
    """A name per model folder: its own name, with ``-2``, ``-3`` ... when two are alike."""
    names: List[str] = []
    for folder in folders:
        base = Path(folder).name or "model"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


class Explorer:
    """The explorer's state and answers (see the module docstring)."""

    def __init__(self, models: Sequence[Tuple[Path, Any, Any]], data: Optional[Path] = None,
                 worker: Optional[concurrent.futures.ThreadPoolExecutor] = None, budget: int = DEFAULT_BUDGET) -> None:
        """``models``: ``(folder, model, tokenizer)`` of every ``--model``, in order (the first is
        the default); ``data``: a JSONL file written by ``bert-lrp explain --jsonl``; ``worker``:
        the one-thread executor the models were loaded on (see :meth:`load`); ``budget``: forward
        rows x tokens one request (or one uploaded text) may cost."""
        if not models:
            raise UsageError("the explorer needs at least one model")
        names = model_names([folder for folder, _, _ in models])
        self.models = {name: LoadedModel(name, Path(folder), model, tokenizer_for_road(tokenizer, model))
                       for name, (folder, model, tokenizer) in zip(names, models)}  # any tokenizer, adapted once
        self.default = names[0]
        self.budget = int(budget)
        self.datasets: Dict[str, DataSet] = {}
        self.jobs: Dict[str, Job] = {}
        self.throughput = Throughput()
        self._runs: set = set()  # the RunProgress of every run under way (cancel_all)
        self._state = threading.Lock()  # guards datasets, jobs and runs
        self._next_dataset = 1
        self._worker = worker or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bert-lrp-model")
        self._worker_thread = self._worker.submit(threading.get_ident).result()  # one thread, kept until close()
        if data is not None:
            self._store(lambda dataset_id: read_dataset(dataset_id, Path(data)))

    @classmethod
    def load(cls, folders: Sequence[Path], data: Optional[Path] = None, threads: Optional[int] = None,
             budget: int = DEFAULT_BUDGET) -> "Explorer":
        """An explorer of the model ``folders``, each loaded once, on the model worker thread (a
        model another thread loaded ran about 50 % slower there: 35 ms instead of 22.5 ms for one
        sentence's LRP, measured on 2 cores); ``threads``: PyTorch's threads for that thread."""
        worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bert-lrp-model")
        try:
            if threads:
                worker.submit(torch.set_num_threads, threads).result()
            loaded = [(Path(folder), *worker.submit(load_model, folder).result()) for folder in folders]
        except BaseException:
            worker.shutdown(wait=False)
            raise
        return cls(loaded, data, worker, budget)

    def on_worker(self, run: Callable[[], Any]) -> Any:
        """``run()`` on the model worker thread (after the runs queued before it); its result."""
        if threading.get_ident() == self._worker_thread:
            return run()
        return self._worker.submit(run).result()

    def submit(self, method: Callable[..., Any], *args: Any) -> "concurrent.futures.Future[Any]":
        """``method(*args)`` queued on the model worker thread as a whole (a request's checks, model run
        and views: one hop from the web server's loop)."""
        return self._worker.submit(method, *args)

    def close(self) -> None:
        """Stop the model worker (after the runs queued)."""
        self._worker.shutdown(wait=True)

    def cancel_all(self) -> None:
        """Cancel every run under way and every upload job (Ctrl-C): each stops at its next chunk."""
        with self._state:
            runs, jobs = list(self._runs), list(self.jobs.values())
        for run in runs:
            run.cancel()
        for job in jobs:
            job.cancelled.set()

    # ------------------------------------------------------------------ catalogue
    def models_info(self) -> Dict[str, Any]:
        return {"models": [entry.info() for entry in self.models.values()], "default": self.default}

    @staticmethod
    def methods_info() -> Dict[str, Any]:
        methods = []
        for method in registry.all_methods():
            methods.append({"name": method.name, "title": method.label, "aliases": list(method.aliases),
                            "shared_pass": method.shared_pass,
                            "options": [option_info(option) for option in method.options]})
        presets = [m["name"] for m in methods if m["name"].startswith("lrp:")]
        return {"methods": methods, "defaults": list(DEFAULT_METHODS), "lrp_presets": presets}

    def _model(self, name: Any) -> LoadedModel:
        if name is None:
            return self.models[self.default]
        if not isinstance(name, str) or name not in self.models:
            raise ApiError(404, f"no model named {str(name)[:80]!r}; the models are {', '.join(self.models)}", "model")
        return self.models[name]

    # ------------------------------------------------------------------ plan
    def request(self, body: Dict[str, Any], entry: LoadedModel, layers: bool = True) -> Plan:
        """The road's Plan of an explain body: checked once (methods and options by the registry,
        target and word against the model); a wrong field is an :class:`ApiError` 400 naming it."""
        request = Request(methods=body.get("methods") or list(DEFAULT_METHODS), target=body.get("target"),
                          options=dict(body.get("options") or {}), word=body.get("word"), layers=layers)
        with api_errors():
            return plan_request(entry.model, entry.tokenizer, request)

    def prepare(self, body: Any) -> Prepared:
        """An explain body checked whole before anything runs: fields, model, text length (at most
        :data:`MAX_WINDOWS` windows), chunk options against memory, methods and options, and the
        cost against the budget (413 naming the field)."""
        body = checked(body, EXPLAIN_FIELDS, required=("text",))
        entry = self._model(body.get("model"))
        if task_of(entry.model) not in ("sequence", "token"):
            raise ApiError(400, f"model {entry.name} is a {task_of(entry.model)} model: explain needs a sequence or "
                           "token classifier (use the masked-word view)", "model")
        item = TextInput(body["text"], body.get("pair"), "text")
        encoding = self._encoding(entry, item)
        width = min(len(encoding.tokens[0]), model_limit(entry.model, entry.tokenizer))
        methods = body.get("methods") or list(DEFAULT_METHODS)
        options = chunk_options(dict(body.get("options") or {}), [m for m in methods if isinstance(m, str)], width)
        plan = self.request({**body, "options": options}, entry)
        cost = text_cost(plan, encoding)
        error = budget_error(plan, encoding, cost, self.budget, dict(body.get("options") or {}))
        if error is not None:
            raise error
        return Prepared(entry, item, body, options, plan, cost)

    def plan(self, body: Any) -> Dict[str, Any]:
        """``POST /api/plan``: what an explain body would cost (rows, tokens, the budget, seconds
        from this explorer's measured throughput) and its groups in run order. A body over the
        budget is answered (``within_budget: false``) with the error it would get."""
        try:
            prepared, refusal = self.prepare(body), None
        except ApiError as error:
            if error.status != 413 or error.field is None or not (error.field == "methods"
                                                                  or error.field.startswith("options.")):
                raise
            prepared, refusal = self._prepare_unbounded(body), error
        return self._plan_answer(prepared, refusal)

    def _plan_answer(self, prepared: Prepared, refusal: Optional[ApiError] = None) -> Dict[str, Any]:
        cost = prepared.cost
        answer = {"rows": cost.rows, "tokens": cost.tokens, "cost": cost.cost, "budget": self.budget,
                  "within_budget": refusal is None, "seconds": self.throughput.seconds(cost.cost),
                  "groups": [{"methods": list(g.methods), "rows": g.rows, "cost": g.cost,
                              "seconds": self.throughput.seconds(g.cost)} for g in cost.groups]}
        if refusal is not None:
            answer["error"], answer["field"] = str(refusal), refusal.field
        return answer

    def _prepare_unbounded(self, body: Dict[str, Any]) -> Prepared:
        """:meth:`prepare` without the budget and memory bounds (to tell what an over-budget body costs)."""
        entry = self._model(body.get("model"))
        item = TextInput(body["text"], body.get("pair"), "text")
        encoding = self._encoding(entry, item)
        plan = self.request(body, entry)
        return Prepared(entry, item, body, dict(body.get("options") or {}), plan, text_cost(plan, encoding))

    def _encoding(self, entry: LoadedModel, item: TextInput):
        """The whole text's encoding; empty, too long (413) or not a text: an ApiError naming the field."""
        for name, value in (("text", item.text), ("pair", item.pair)):
            if value is not None and not value.strip():
                raise ApiError(400, f"the {'pair text' if name == 'pair' else 'text'} is empty", name)
        if len(item.text) + len(item.pair or "") > MAX_TEXT_CHARACTERS:
            raise ApiError(413, f"the text is longer than {MAX_TEXT_CHARACTERS:,} characters", "text")
        try:
            encoding = encode_whole(entry.tokenizer, item)
        except UsageError as error:
            raise ApiError(400, str(error), "text") from None
        pieces = len(encoding.tokens[0])
        bound = model_limit(entry.model, entry.tokenizer) * MAX_WINDOWS
        if pieces > bound:
            raise ApiError(413, f"the text has {pieces:,} word pieces; the explorer explains at most {bound:,} "
                           f"({MAX_WINDOWS} windows of the model's positions)", "text")
        return encoding

    # ------------------------------------------------------------------ explain
    def explain(self, body: Any, cancelled: Any = None) -> Dict[str, Any]:
        """``POST /api/explain``: the ``explain --json`` document of one text, plus ``views``.
        ``cancelled``: a ``threading.Event`` (or a callable) that stops the run at its next forward
        chunk when set (then an ApiError 503)."""
        prepared = self.prepare(body)
        progress = RunProgress(prepared.cost.rows, cancelled)
        with self._running(progress):
            explained = self._run(prepared, prepared.plan, progress)
        self.throughput.record(prepared.cost.cost, progress.seconds)
        return self.document(prepared, prepared.plan, explained)

    def explain_stream(self, body: Any, emit: Emit, cancelled: Any = None) -> Optional[Dict[str, Any]]:
        """``POST /api/explain/stream``: checks first (a wrong body raises its ApiError before any
        event), then ``emit`` gets ``plan``, ``progress`` (at most ~5 a second), one ``group`` per
        group of methods as it finishes, and one of ``done`` (the whole document, equal to
        :meth:`explain`'s), ``error`` or ``cancelled``. Returns the done payload (else None)."""
        prepared = self.prepare(body)
        emit({"event": "plan", **self._plan_answer(prepared)})
        progress = RunProgress(prepared.cost.rows, cancelled, emit)
        parts: List[TextExplanation] = []
        done = 0
        try:
            with self._running(progress):
                for group in prepared.cost.groups:
                    plan = self.request({**prepared.body, "options": prepared.options,
                                         "methods": list(group.methods)}, prepared.entry)
                    part = self._run(prepared, plan, progress)
                    self.throughput.record(group.cost, progress.seconds)
                    done += group.rows
                    progress.reach(done)
                    parts.append(part)
                    emit({"event": "group", "methods": list(group.methods),
                          "payload": self.document(prepared, plan, part)})
            merged = merge_explanations(parts, list(prepared.plan.methods))
            payload = self.document(prepared, prepared.plan, merged)
        except ApiError as error:
            if error.status == 503 and progress.cancelled:
                emit({"event": "cancelled"})
                return None
            emit({"event": "error", "status": error.status, "error": str(error), "field": error.field})
            return None
        except Exception as error:  # noqa: BLE001 -- the stream says so in one line; the server goes on
            log.exception("internal error in a streamed explain")
            message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            emit({"event": "error", "status": 500, "error": f"internal error: {message}", "field": None})
            return None
        emit({"event": "done", "payload": payload})
        return payload

    @contextlib.contextmanager
    def _running(self, progress: RunProgress) -> Iterator[None]:
        """``progress`` is a run under way for the time of the block (:meth:`cancel_all` reaches it)."""
        with self._state:
            self._runs.add(progress)
        try:
            yield
        finally:
            with self._state:
                self._runs.discard(progress)

    def _run(self, prepared: Prepared, plan: Plan, progress: RunProgress) -> TextExplanation:
        """One road run of the prepared text with ``plan`` on the model worker, stopped at its next
        forward chunk once ``progress`` is cancelled (then an ApiError 503)."""
        entry = prepared.entry
        try:
            progress.check()
            started = time.monotonic()
            with api_errors():
                explained = self.on_worker(lambda: explain_texts(entry.model, entry.tokenizer, [prepared.item], plan,
                                                                 progress=progress))
            progress.seconds = time.monotonic() - started
            return explained[0]
        except Cancelled:
            raise ApiError(503, "the request was cancelled (its client went away, or the server is stopping)") \
                from None

    def document(self, prepared: Prepared, plan: Plan, explained: TextExplanation) -> Dict[str, Any]:
        """The ``explain --json`` document of one explained text, plus ``views``."""
        payload = json_payload(prepared.entry.name, plan, [explained])
        record = explained.record(layers=True)
        payload["views"] = self.views(record, short_heading(record))
        return payload

    @staticmethod
    def views(record: Dict[str, Any], heading: str) -> Dict[str, Any]:
        """The server-drawn views of a record: heatmaps (headed by ``heading``), per-layer scores, agreement."""
        return {"html": "\n".join(example_html(view, heading=heading) for view in label_views(record)),
                "layers": {m: v for m, v in record.get("layer_scores", {}).items()},
                "agreement": agreement(record)}

    # ------------------------------------------------------------------ attention and masks
    def _attention_text(self, body: Any, fields: Dict[str, Any], required: Sequence[str]):
        body = checked(body, fields, required=required)
        entry = self._model(body.get("model"))
        item = TextInput(body["text"], body.get("pair"), "text")
        encoding = self._encoding(entry, item)
        limit = model_limit(entry.model, entry.tokenizer)
        if len(encoding.tokens[0]) > limit:
            raise ApiError(400, f"the attention view needs a text that fits the model's {limit} positions "
                                f"(this one has {len(encoding.tokens[0]):,} word pieces)", "text")

        def run():
            with torch.no_grad():
                _, encoded = next(encoded_batches(entry.model, entry.tokenizer, [item], 1))
                output = entry.model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                                     token_type_ids=encoded["token_type_ids"], output_attentions=True)
                return list(encoded.tokens[0]), torch.stack([a[0] for a in output.attentions])
        return body, entry, run

    def attention(self, body: Any) -> Dict[str, Any]:
        """``POST /api/attention``: one head's attention (``layer``, ``head`` from 0) of a text that fits."""
        body, entry, run = self._attention_text(body, {**TEXT_FIELDS, "layer": int, "head": int},
                                                ("text", "layer", "head"))
        config = entry.model.config
        for name, count in (("layer", config.num_hidden_layers), ("head", config.num_attention_heads)):
            if not 0 <= body[name] < count:
                raise ApiError(400, f"{name} must be in 0..{count - 1} (counted from 0), got {body[name]}", name)
        tokens, matrices = self.on_worker(run)
        return attention_view.one_head(tokens, matrices, body["layer"], body["head"])

    def attention_overview(self, body: Any) -> Dict[str, Any]:
        """``POST /api/attention/overview``: every head as a pooled thumbnail (bertviz's model view)."""
        _, _, run = self._attention_text(body, TEXT_FIELDS, ("text",))
        tokens, matrices = self.on_worker(run)
        return attention_view.overview(tokens, matrices)

    def mask(self, body: Any) -> Dict[str, Any]:
        """``POST /api/mask``: the masked-word view (output and logit lens) of a masked LM."""
        from ...inspection.mask import masked_word_view

        body = checked(body, {"model": str, "text": str, "top_k": int}, required=("text",))
        entry = self._model(body.get("model"))
        if task_of(entry.model) != "masked_lm":
            raise ApiError(400, f"model {entry.name} is not a masked LM", "model")
        top_k = body.get("top_k", 5)
        if isinstance(top_k, bool) or not 1 <= top_k <= 50:
            raise ApiError(400, f"top_k must be in 1..50, got {top_k!r}", "top_k")
        self._encoding(entry, TextInput(body["text"], None, "text"))
        try:
            return self.on_worker(lambda: masked_word_view(entry.model, entry.tokenizer, body["text"], top_k))
        except UsageError as error:
            raise ApiError(400, str(error), "text") from None

    @staticmethod
    def report(body: Any) -> str:
        """``POST /api/report``: the static HTML report of what the page shows: per example its
        record (checked against the record schema, unknown fields dropped) and optionally its
        ``views`` (per-layer relevance, the agreement matrix, the attention head shown)."""
        body = checked(body, {"examples": list, "views": (list, type(None)), "title": (str, type(None))},
                        required=("examples",))
        records = []
        for number, record in enumerate(body["examples"]):
            try:
                records.append(check_record(record, f"examples[{number}]", drop_unknown=True))
            except DataError as error:
                raise ApiError(400, str(error), "examples") from None
        views = body.get("views")
        if views is not None and len(views) != len(records):
            raise ApiError(400, f"views holds {len(views)} entries for {len(records)} examples (one each, or none)",
                           "views")
        try:
            return render_html(records, title=body.get("title") or "bert-lrp explanations", views=views)
        except ValueError as error:
            raise ApiError(400, str(error), "views") from None

    # ------------------------------------------------------------------ data sets
    def _store(self, make: Callable[[str], DataSet]) -> DataSet:
        with self._state:
            dataset_id = str(self._next_dataset)
            self._next_dataset += 1
        data = make(dataset_id)
        with self._state:
            self.datasets[dataset_id] = data
        return data

    def datasets_info(self) -> Dict[str, Any]:
        with self._state:
            sets = list(self.datasets.values())
        return {"datasets": [d.info() for d in sets]}

    def _dataset(self, dataset_id: str) -> DataSet:
        with self._state:
            if dataset_id not in self.datasets:
                raise ApiError(404, f"no data set {str(dataset_id)[:40]!r}", "dataset")
            return self.datasets[dataset_id]

    def rows(self, dataset_id: str, query: Dict[str, str]) -> Dict[str, Any]:
        """``GET /api/datasets/{id}/rows``: the rows, filtered, sorted and paged (:func:`.datasets.rows`)."""
        return datasets.rows(self._dataset(dataset_id), query)

    def row(self, dataset_id: str, index: str) -> Dict[str, Any]:
        """``GET /api/datasets/{id}/rows/{index}``: one record and its views (``index``: ASCII digits)."""
        data = self._dataset(dataset_id)
        number = datasets.row_index(data, index)
        record = data.records[number]
        if "error" in record:
            return {"record": record, "views": {"html": "", "layers": {}, "agreement": None}}
        return {"record": record, "views": self.views(record, f"Row {number}: {short_heading(record)}")}

    def words(self, dataset_id: str, query: Dict[str, str]) -> Dict[str, Any]:
        """``GET /api/datasets/{id}/words``: per label, the words that most often push toward it."""
        return datasets.words(self._dataset(dataset_id), query)

    def metrics(self, dataset_id: str, query: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """``GET /api/datasets/{id}/metrics``: accuracy, confusion matrix, confidence histogram."""
        datasets.check_query(query or {}, set())
        return datasets.metrics(self._dataset(dataset_id))

    def delete_dataset(self, dataset_id: str) -> None:
        """``DELETE /api/datasets/{id}``: forget a data set (the ``--data`` set too); its memory is freed."""
        with self._state:
            if dataset_id not in self.datasets:
                raise ApiError(404, f"no data set {str(dataset_id)[:40]!r}", "dataset")
            del self.datasets[dataset_id]

    def upload(self, body: Any) -> Dict[str, Any]:
        """``POST /api/datasets``: explain an uploaded text file in the background (a job). Every
        text is checked as :meth:`explain` checks one (16 windows, the budget: 413 naming its line)."""
        body = checked(body, {"model": str, "name": str, "text": str, "methods": list, "options": dict,
                               "target": (str, type(None))}, required=("text",))
        name = body.get("name") or "upload"
        if len(name) > MAX_NAME:
            raise ApiError(400, f"the name has {len(name):,} characters; at most {MAX_NAME}", "name")
        if len(body["text"].encode("utf-8")) > MAX_UPLOAD_BYTES:
            raise ApiError(413, f"the file is larger than {MAX_UPLOAD_BYTES:,} bytes", "text")
        try:
            items = parse_texts(body["text"], name)  # every command's reading of a file: lines, or a table's rows
        except DataError as error:
            raise ApiError(400, str(error), "text") from None
        if not items:
            raise ApiError(400, "the file holds no text", "text")
        if len(items) > MAX_UPLOAD_LINES:
            raise ApiError(413, f"the file holds {len(items):,} texts; at most {MAX_UPLOAD_LINES:,}", "text")
        entry = self._model(body.get("model"))
        given = dict(body.get("options") or {})
        methods = body.get("methods") or list(DEFAULT_METHODS)
        encodings = [self._text_of_upload(entry, item) for item in items]
        width = max(min(len(e.tokens[0]), model_limit(entry.model, entry.tokenizer)) for e in encodings)
        options = chunk_options(given, [m for m in methods if isinstance(m, str)], width)
        plan = self.request({**body, "text": None, "options": options}, entry, layers=False)
        costs = []
        for item, encoding in zip(items, encodings):
            cost = text_cost(plan, encoding)
            error = budget_error(plan, encoding, cost, self.budget, given, where=item.source)
            if error is not None:
                raise error
            costs.append(cost)
        self._check_room(len(items))
        job = Job(uuid.uuid4().hex[:12], len(items))
        with self._state:
            if any(not j.finished for j in self.jobs.values()):
                raise ApiError(409, "another data set is being explained; wait for it (or cancel it)", "text")
            self.jobs[job.id] = job
        thread = threading.Thread(target=self._run_job, args=(job, entry, plan, items, name, costs), daemon=True)
        thread.start()
        return job.info()

    def _text_of_upload(self, entry: LoadedModel, item: TextInput):
        try:
            return self._encoding(entry, item)
        except ApiError as error:
            raise ApiError(error.status, f"{item.source}: {error}", "text") from None

    def _check_room(self, new_rows: int) -> None:
        """A new data set of ``new_rows`` rows fits the explorer's memory bound; else 413 saying how to free it."""
        with self._state:
            held_rows = sum(len(d.records) for d in self.datasets.values())
            held_bytes = sum(d.size for d in self.datasets.values())
            names = ", ".join(f"{d.id} ({d.name[:40]})" for d in self.datasets.values())
        if held_rows + new_rows > MAX_STORED_ROWS or held_bytes >= MAX_STORED_BYTES:
            raise ApiError(413, f"the explorer holds {held_rows:,} rows ({held_bytes / 2 ** 20:.1f} MB) of data sets; "
                                f"it keeps at most {MAX_STORED_ROWS:,} rows and {MAX_STORED_BYTES / 2 ** 20:.0f} MB: "
                                f"free room with DELETE /api/datasets/{{id}} (held: {names})", "text")

    def _run_job(self, job: Job, entry: LoadedModel, plan: Plan, items: List[TextInput], name: str,
                 costs: List[TextCost]) -> None:
        """Explain an upload's texts a chunk at a time on the model worker; the data set is stored at
        the end (a cancelled job, at its next forward chunk, stores nothing)."""
        records: List[Dict[str, Any]] = []
        progress = RunProgress(sum(c.rows for c in costs), job.cancelled)
        started = time.monotonic()
        try:
            for chunk_start in range(0, len(items), JOB_CHUNK):  # a chunk at a time: requests get their turn
                progress.check()
                chunk = items[chunk_start:chunk_start + JOB_CHUNK]
                explained = self.on_worker(lambda: list(stream_texts(entry.model, entry.tokenizer, chunk, plan,
                                                                      warn=lambda _: None, go_on=True,
                                                                      progress=progress)))
                for index, text in explained:
                    record = text.record()
                    record["index"] = chunk_start + index
                    records.append(record)
                job.done = len(records)
            self.throughput.record(sum(c.cost for c in costs), time.monotonic() - started)
            data = self._store(lambda dataset_id: DataSet(dataset_id, name, records, list(plan.methods)))
            job.dataset = data.id
        except Cancelled:
            job.error = "cancelled"
        except Exception as error:  # noqa: BLE001 -- the job reports it; the server goes on
            job.error = f"{type(error).__name__}: {error}" if not isinstance(error, BertLrpError) else str(error)
        finally:
            job.finished = True

    def job(self, job_id: str) -> Dict[str, Any]:
        with self._state:
            if job_id not in self.jobs:
                raise ApiError(404, f"no job {str(job_id)[:40]!r}", "job")
            return self.jobs[job_id].info()

    def cancel_job(self, job_id: str) -> None:
        """``DELETE /api/jobs/{id}``: cancel an upload's job (it stops at its next forward chunk)."""
        with self._state:
            if job_id not in self.jobs:
                raise ApiError(404, f"no job {str(job_id)[:40]!r}", "job")
            self.jobs[job_id].cancelled.set()


Answer = Callable[..., Any]
__all__ = ["ApiError", "Explorer", "FailedText", "agreement", "model_names", "read_dataset", "row_summary",
           "word_pushes"]
