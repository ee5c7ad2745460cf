"""What the explorer's API does, without the web server: every request is checked here and
answered by the one road (:mod:`bert_lrp.attribution.road`), so the page, the API and the command
line give the same records.

An :class:`Explorer` holds the models given on the command line (loaded once), the data sets
(``--data`` and uploads) and the upload jobs. Every model run (explain, attention, masked words,
each chunk of an upload) happens on one worker thread, so runs never interleave and PyTorch keeps
one team of threads: a model that another thread loaded or ran is about 50 % slower on 2 cores
(measured: one sentence, LRP, 22-24 ms from one thread, 34-36 ms once two threads have used the
model). :meth:`Explorer.load` therefore loads the models on that thread too. Bad
requests raise :class:`ApiError` (HTTP status, one line, the field at fault).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ...attribution import registry
from ...attribution.heatmaps import example_html
from ...attribution.records import FailedText, label_views
from ...attribution.plan import Plan, plan_request
from ...attribution.road import (DEFAULT_METHODS, Request, TextInput, encode_whole, encoded_batches, explain_texts,
                                 json_payload, model_limit, stream_texts)
from ...attribution.targets import task_of
from ...attribution.transformers_inputs import tokenizer_for_road
from ...data import DataError, parse_texts, read_explanations
from ...errors import BertLrpError, RequestError, UsageError
from ...models.loading import load_model
from ..html_report import render_html

MAX_WINDOWS = 16               # a text may span at most this many windows of the model's positions
MAX_UPLOAD_BYTES = 1 << 20     # an uploaded data set: 1 MB ...
MAX_UPLOAD_LINES = 2_000       # ... and 2,000 texts
MAX_ROWS_PAGE = 500
JOB_CHUNK = 16                 # texts of an upload explained per turn of the model worker
EXPLAIN_FIELDS = {"model": str, "text": str, "pair": (str, type(None)), "methods": list, "target": (str, type(None)),
                  "options": dict, "word": (str, type(None))}


class ApiError(Exception):
    """A request the explorer refuses: ``status`` (400, 404, 413), one line, the field at fault."""

    def __init__(self, status: int, message: str, field_name: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.field = status, field_name


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
class DataSet:
    id: str
    name: str
    records: List[Dict[str, Any]]
    methods: List[str]


@dataclass
class Job:
    id: str
    total: int
    done: int = 0
    finished: bool = False
    error: Optional[str] = None
    dataset: Optional[str] = None

    def info(self) -> Dict[str, Any]:
        return {"job": self.id, "done": self.done, "total": self.total, "finished": self.finished,
                "error": self.error, "dataset": self.dataset}


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
                 worker: Optional[concurrent.futures.ThreadPoolExecutor] = None) -> None:
        """``models``: ``(folder, model, tokenizer)`` of every ``--model``, in order (the first is
        the default); ``data``: a JSONL file written by ``bert-lrp explain --jsonl``; ``worker``:
        the one-thread executor the models were loaded on (see :meth:`load`)."""
        if not models:
            raise UsageError("the explorer needs at least one model")
        names = model_names([folder for folder, _, _ in models])
        self.models = {name: LoadedModel(name, Path(folder), model, tokenizer_for_road(tokenizer, model))
                       for name, (folder, model, tokenizer) in zip(names, models)}  # any tokenizer, adapted once
        self.default = names[0]
        self.datasets: Dict[str, DataSet] = {}
        self.jobs: Dict[str, Job] = {}
        self._state = threading.Lock()  # guards datasets and jobs
        self._worker = worker or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bert-lrp-model")
        self._worker_thread = self._worker.submit(threading.get_ident).result()  # one thread, kept until close()
        if data is not None:
            self.datasets["1"] = read_dataset("1", Path(data))

    @classmethod
    def load(cls, folders: Sequence[Path], data: Optional[Path] = None, threads: Optional[int] = None) -> "Explorer":
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
        return cls(loaded, data, worker)

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

    # ------------------------------------------------------------------ catalogue
    def models_info(self) -> Dict[str, Any]:
        return {"models": [entry.info() for entry in self.models.values()], "default": self.default}

    @staticmethod
    def methods_info() -> Dict[str, Any]:
        methods = []
        for method in registry.all_methods():
            methods.append({"name": method.name, "title": method.label, "aliases": list(method.aliases),
                            "shared_pass": method.shared_pass,
                            "options": [_option_info(option) for option in method.options]})
        presets = [m["name"] for m in methods if m["name"].startswith("lrp:")]
        return {"methods": methods, "defaults": list(DEFAULT_METHODS), "lrp_presets": presets}

    def _model(self, name: Any) -> LoadedModel:
        if name is None:
            return self.models[self.default]
        if not isinstance(name, str) or name not in self.models:
            raise ApiError(404, f"no model named {str(name)[:80]!r}; the models are {', '.join(self.models)}", "model")
        return self.models[name]

    # ------------------------------------------------------------------ explain
    def request(self, body: Dict[str, Any], entry: LoadedModel, layers: bool = True) -> Plan:
        """The road's Plan of an explain body: checked once (methods and options by the registry,
        target and word against the model); a wrong field is an :class:`ApiError` 400 naming it."""
        request = Request(methods=body.get("methods") or list(DEFAULT_METHODS), target=body.get("target"),
                          options=dict(body.get("options") or {}), word=body.get("word"), layers=layers)
        with api_errors():
            return plan_request(entry.model, entry.tokenizer, request)

    def explain(self, body: Any) -> Dict[str, Any]:
        """``POST /api/explain``: the ``explain --json`` document of one text, plus ``views``."""
        body = _checked(body, EXPLAIN_FIELDS, required=("text",))
        entry = self._model(body.get("model"))
        if task_of(entry.model) not in ("sequence", "token"):
            raise ApiError(400, f"model {entry.name} is a {task_of(entry.model)} model: explain needs a sequence or "
                           "token classifier (use the masked-word view)", "model")
        plan = self.request(body, entry)
        item = TextInput(body["text"], body.get("pair"), "text")
        self._check_length(entry, item)
        with api_errors():
            explained = self.on_worker(lambda: explain_texts(entry.model, entry.tokenizer, [item], plan))
        payload = json_payload(entry.name, plan, explained)
        record = explained[0].record(layers=True)
        payload["views"] = {"html": "\n".join(example_html(view, 1) for view in label_views(record)),
                            "layers": {m: v for m, v in record.get("layer_scores", {}).items()},
                            "agreement": agreement(payload["examples"][0])}
        return payload

    def _check_length(self, entry: LoadedModel, item: TextInput) -> None:
        if not item.text.strip():
            raise ApiError(400, "the text is empty", "text")
        if len(item.text) + len(item.pair or "") > 200_000:
            raise ApiError(413, "the text is longer than 200,000 characters", "text")
        pieces = len(encode_whole(entry.tokenizer, item).tokens[0])
        bound = model_limit(entry.model, entry.tokenizer) * MAX_WINDOWS
        if pieces > bound:
            raise ApiError(413, f"the text has {pieces:,} word pieces; the explorer explains at most {bound:,} "
                           f"({MAX_WINDOWS} windows of the model's positions)", "text")

    # ------------------------------------------------------------------ attention and masks
    def attention(self, body: Any) -> Dict[str, Any]:
        """``POST /api/attention``: every layer's and head's attention of a text that fits."""
        body = _checked(body, {"model": str, "text": str, "pair": (str, type(None))}, required=("text",))
        entry = self._model(body.get("model"))
        item = TextInput(body["text"], body.get("pair"), "text")
        self._check_length(entry, item)
        limit = model_limit(entry.model, entry.tokenizer)
        if len(encode_whole(entry.tokenizer, item).tokens[0]) > limit:
            raise ApiError(400, f"the attention view needs a text that fits the model's {limit} positions", "text")

        def run():
            with torch.no_grad():
                _, encoding = next(encoded_batches(entry.model, entry.tokenizer, [item], 1))
                return encoding, entry.model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                                             token_type_ids=encoding["token_type_ids"], output_attentions=True)
        encoding, output = self.on_worker(run)
        matrices = torch.stack([a[0] for a in output.attentions])  # [layers, heads, seq, seq]
        return {"tokens": list(encoding.tokens[0]), "layers": matrices.shape[0], "heads": matrices.shape[1],
                "attention": [[[[round(float(v), 5) for v in row] for row in head] for head in layer]
                              for layer in matrices.tolist()]}

    def mask(self, body: Any) -> Dict[str, Any]:
        """``POST /api/mask``: the masked-word view (output and logit lens) of a masked LM."""
        from ...inspection.mask import masked_word_view

        body = _checked(body, {"model": str, "text": str, "top_k": int}, required=("text",))
        entry = self._model(body.get("model"))
        if task_of(entry.model) != "masked_lm":
            raise ApiError(400, f"model {entry.name} is not a masked LM", "model")
        top_k = body.get("top_k", 5)
        if isinstance(top_k, bool) or not 1 <= top_k <= 50:
            raise ApiError(400, f"top_k must be in 1..50, got {top_k!r}", "top_k")
        self._check_length(entry, TextInput(body["text"], None, "text"))
        try:
            return self.on_worker(lambda: masked_word_view(entry.model, entry.tokenizer, body["text"], top_k))
        except UsageError as error:
            raise ApiError(400, str(error), "text") from None

    @staticmethod
    def report(body: Any) -> str:
        """``POST /api/report``: the static HTML report of records the page shows."""
        body = _checked(body, {"examples": list, "title": (str, type(None))}, required=("examples",))
        try:
            views = [view for record in body["examples"] for view in label_views(record)]
            return render_html(views, title=body.get("title") or "bert-lrp explanations")
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
            raise ApiError(400, f"examples are not records of /api/explain ({type(error).__name__}: {error})",
                           "examples") from None

    # ------------------------------------------------------------------ data sets
    def datasets_info(self) -> Dict[str, Any]:
        with self._state:
            sets = list(self.datasets.values())
        return {"datasets": [{"id": d.id, "name": d.name, "rows": len(d.records), "labels": _labels_of(d.records),
                              "has_gold": any("label" in r for r in d.records), "methods": d.methods} for d in sets]}

    def _dataset(self, dataset_id: str) -> DataSet:
        with self._state:
            if dataset_id not in self.datasets:
                raise ApiError(404, f"no data set {dataset_id!r}", "dataset")
            return self.datasets[dataset_id]

    def rows(self, dataset_id: str, query: Dict[str, str]) -> Dict[str, Any]:
        """``GET /api/datasets/{id}/rows``: the rows, filtered, sorted and paged."""
        known = {"sort", "order", "label", "correct", "word", "offset", "limit"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise ApiError(400, f"unknown query field {unknown[0]!r}", unknown[0])
        data = self._dataset(dataset_id)
        rows = [row_summary(i, r) for i, r in enumerate(data.records)]
        if query.get("label"):
            rows = [r for r in rows if r["prediction"] == query["label"]]
        if query.get("correct") in ("true", "false"):
            wanted = query["correct"] == "true"
            rows = [r for r in rows if r["correct"] is wanted]
        elif query.get("correct"):
            raise ApiError(400, "correct must be true or false", "correct")
        if query.get("word"):
            word = query["word"].lower()
            rows = [r for r in rows if word in _words(data.records[r["index"]])]
        sort = query.get("sort", "index")
        if sort not in ("index", "confidence", "prediction"):
            raise ApiError(400, "sort must be index, confidence or prediction", "sort")
        order = query.get("order", "asc")
        if order not in ("asc", "desc"):
            raise ApiError(400, "order must be asc or desc", "order")
        rows.sort(key=lambda r: (r[sort] is None, r[sort] if r[sort] is not None else 0, r["index"]),
                  reverse=order == "desc")
        offset, limit = _int(query, "offset", 0, 0, 10 ** 9), _int(query, "limit", 100, 1, MAX_ROWS_PAGE)
        return {"total": len(rows), "rows": rows[offset:offset + limit]}

    def row(self, dataset_id: str, index: str) -> Dict[str, Any]:
        data = self._dataset(dataset_id)
        try:
            record = data.records[int(index)]
        except (ValueError, IndexError):
            raise ApiError(404, f"data set {dataset_id} has no row {index!r}", "index") from None
        if "error" in record:
            return {"record": record, "views": {"html": "", "layers": {}, "agreement": None}}
        return {"record": record, "views": {"html": "\n".join(example_html(v, 1) for v in label_views(record)),
                                            "layers": {}, "agreement": agreement(record)}}

    def words(self, dataset_id: str, query: Dict[str, str]) -> Dict[str, Any]:
        """``GET /api/datasets/{id}/words``: per label, the words that most often push toward it."""
        data = self._dataset(dataset_id)
        method = query.get("method") or (data.methods[0] if data.methods else None)
        if method not in data.methods:
            raise ApiError(400, f"method {method!r} is not in this data set ({', '.join(data.methods)})", "method")
        top = _int(query, "top", 20, 1, 200)
        return {"method": method, "labels": word_pushes(data.records, method, top)}

    def upload(self, body: Any) -> Dict[str, Any]:
        """``POST /api/datasets``: explain an uploaded text file in the background (a job)."""
        body = _checked(body, {"model": str, "name": str, "text": str, "methods": list, "options": dict,
                               "target": (str, type(None))}, required=("text",))
        if len(body["text"].encode("utf-8")) > MAX_UPLOAD_BYTES:
            raise ApiError(413, f"the file is larger than {MAX_UPLOAD_BYTES:,} bytes", "text")
        name = body.get("name") or "upload"
        try:
            items = parse_texts(body["text"], name)  # every command's reading of a file: lines, or a table's rows
        except DataError as error:
            raise ApiError(400, str(error), "text") from None
        if not items:
            raise ApiError(400, "the file holds no text", "text")
        if len(items) > MAX_UPLOAD_LINES:
            raise ApiError(413, f"the file holds {len(items):,} texts; at most {MAX_UPLOAD_LINES:,}", "text")
        entry = self._model(body.get("model"))
        request = self.request({**body, "text": None}, entry, layers=False)
        job = Job(uuid.uuid4().hex[:12], len(items))
        with self._state:
            if any(not j.finished for j in self.jobs.values()):
                raise ApiError(409, "another data set is being explained; wait for it", "text")
            self.jobs[job.id] = job
        thread = threading.Thread(target=self._run_job, args=(job, entry, request, items, name), daemon=True)
        thread.start()
        return job.info()

    def _run_job(self, job: Job, entry: LoadedModel, request: Plan, items: List[TextInput],
                 name: str) -> None:
        records: List[Dict[str, Any]] = []
        try:
            for chunk_start in range(0, len(items), JOB_CHUNK):  # a chunk at a time: requests get their turn
                chunk = items[chunk_start:chunk_start + JOB_CHUNK]
                explained = self.on_worker(lambda: list(stream_texts(entry.model, entry.tokenizer, chunk, request,
                                                                      warn=lambda _: None, go_on=True)))
                for index, text in explained:
                    record = text.record()
                    record["index"] = chunk_start + index
                    records.append(record)
                job.done = len(records)
            with self._state:
                dataset_id = str(len(self.datasets) + 1)
                while dataset_id in self.datasets:
                    dataset_id = str(int(dataset_id) + 1)
                self.datasets[dataset_id] = DataSet(dataset_id, name, records, list(request.methods))
            job.dataset = dataset_id
        except Exception as error:  # noqa: BLE001 -- the job reports it; the server goes on
            job.error = f"{type(error).__name__}: {error}" if not isinstance(error, BertLrpError) else str(error)
        finally:
            job.finished = True

    def job(self, job_id: str) -> Dict[str, Any]:
        with self._state:
            if job_id not in self.jobs:
                raise ApiError(404, f"no job {job_id!r}", "job")
            return self.jobs[job_id].info()


# ---------------------------------------------------------------------- helpers
def _option_info(option: registry.Option) -> Dict[str, Any]:
    default = option.default if isinstance(option.default, (str, int, float, bool)) or option.default is None \
        else str(option.default)
    return {"name": option.name, "flag": option.flag, "kind": option.kind.__name__, "default": default,
            "minimum": option.minimum, "maximum": option.maximum,
            "choices": list(option.choices) if option.choices else None, "help": option.help}


def _checked(body: Any, fields: Dict[str, Any], required: Sequence[str] = ()) -> Dict[str, Any]:
    """The JSON object ``body`` with only ``fields``, each of its type; else :class:`ApiError` 400."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    for name in body:
        if name not in fields:
            raise ApiError(400, f"unknown field {str(name)[:60]!r}; the fields are {', '.join(fields)}", str(name)[:60])
    for name in required:
        if name not in body:
            raise ApiError(400, f"missing field {name!r}", name)
    for name, value in body.items():
        kind = fields[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ApiError(400, f"field {name!r} must be {wanted.replace('NoneType', 'null')}, got "
                           f"{type(value).__name__}", name)
    return body


def json_field(field: str) -> Optional[str]:
    """The JSON field of an explain body that a request's ``field`` names (``options.<name>`` as
    it is), or None when the body has no such field (e.g. ``stride``: the explorer sets none)."""
    if field in EXPLAIN_FIELDS or field.startswith("options."):
        return field
    return None


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """A :class:`RequestError` -> :class:`ApiError` 400 naming its JSON field (from
    ``error.field``, never from the message); another usage error -> 400 without a field."""
    try:
        yield
    except RequestError as error:
        name = json_field(error.field)
        raise ApiError(400, error.message if name else str(error), name) from None
    except UsageError as error:
        raise ApiError(400, str(error)) from None


def _int(query: Dict[str, str], name: str, default: int, low: int, high: int) -> int:
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number", name) from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be in {low}..{high}", name)
    return value


def _spearman(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Spearman's rank correlation (average ranks for ties); None for fewer than 2 values or no spread."""
    if len(a) < 2:
        return None
    ranks = []
    for values in (a, b):
        order = sorted(range(len(values)), key=lambda i: values[i])
        rank = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                rank[order[k]] = (i + j) / 2
            i = j + 1
        ranks.append(torch.tensor(rank, dtype=torch.float64))
    x, y = ranks[0] - ranks[0].mean(), ranks[1] - ranks[1].mean()
    norm = float(x.norm() * y.norm())
    return None if norm == 0 else round(float((x * y).sum()) / norm, 6)


def agreement(record: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Spearman's rank agreement of the word scores between every two methods of a record
    (the explained label; ``target="all"``: the predicted label)."""
    view = next((v for v in label_views(record) if v.get("target") == record.get("prediction")), None) \
        or label_views(record)[0]
    methods = list(view.get("scores", {}))
    matrix = [[_spearman(view["scores"][a]["words"], view["scores"][b]["words"]) for b in methods] for a in methods]
    return {"methods": methods, "spearman": matrix}


def read_dataset(dataset_id: str, path: Path) -> DataSet:
    """A JSONL file of ``bert-lrp explain --jsonl`` records, every record checked field by field
    (:func:`bert_lrp.data.read_explanations`): the first bad record refuses the whole file with one
    :class:`~bert_lrp.data.DataError` naming file, line and field (the explorer does not start);
    a path that does not exist is a :class:`~bert_lrp.errors.RequestError` of the field ``data``."""
    records = read_explanations(path, "data")
    methods = next((list(r["methods"]) for r in records if "methods" in r), [])
    return DataSet(dataset_id, path.name, records, methods)


def row_summary(index: int, record: Dict[str, Any]) -> Dict[str, Any]:
    text = record.get("text", "")
    if "error" in record:
        return {"index": index, "text": text[:200], "prediction": None, "confidence": None,
                "gold": _gold_name(record), "correct": None, "error": record["error"]}
    prediction = record.get("prediction")
    confidence = max(record.get("probabilities", {}).values(), default=None)
    gold = _gold_name(record)
    return {"index": index, "text": text[:200], "prediction": prediction,
            "confidence": None if confidence is None else round(confidence, 4), "gold": gold,
            "correct": None if gold is None else str(gold) == str(prediction), "error": None}


def _gold_name(record: Dict[str, Any]) -> Optional[str]:
    """A record's gold label by name: a label id (``"1"``, as in SST-2's files) becomes the name of
    that label in the record's probabilities (listed in id order); a name stays as it is."""
    gold = record.get("label")
    names = list(record.get("probabilities", {}))
    if gold is None or str(gold) in names:
        return None if gold is None else str(gold)
    text = str(gold).strip()
    return names[int(text)] if text.isdigit() and int(text) < len(names) else text


def _words(record: Dict[str, Any]) -> set:
    return {w["word"].lower() for w in record.get("words", [])}


def _labels_of(records: List[Dict[str, Any]]) -> List[str]:
    labels: List[str] = []
    for record in records:
        for label in record.get("probabilities", {}):
            if label not in labels:
                labels.append(label)
    return labels


def word_pushes(records: List[Dict[str, Any]], method: str, top: int) -> Dict[str, List[Dict[str, Any]]]:
    """Per explained label, the words (lower-cased, at least 2 occurrences) whose ``method`` score
    is positive most often, with count, mean and total score over the data set."""
    stats: Dict[str, Dict[str, List[float]]] = {}
    for record in records:
        if "error" in record:
            continue
        for view in label_views(record):
            scores = view.get("scores", {}).get(method)
            if scores is None:
                continue
            table = stats.setdefault(str(view["target"]), {})
            for word, score in zip(record["words"], scores["words"]):
                table.setdefault(word["word"].lower(), []).append(score)
    out: Dict[str, List[Dict[str, Any]]] = {}
    for label, table in stats.items():
        rows = [{"word": word, "count": sum(s > 0 for s in values), "mean": round(sum(values) / len(values), 6),
                 "total": round(sum(values), 6)} for word, values in table.items() if len(values) >= 2]
        rows = [r for r in rows if r["total"] > 0]
        rows.sort(key=lambda r: (-r["total"], r["word"]))
        out[label] = rows[:top]
    return out


Answer = Callable[..., Any]
__all__ = ["ApiError", "Explorer", "FailedText", "agreement", "model_names", "read_dataset", "word_pushes"]
