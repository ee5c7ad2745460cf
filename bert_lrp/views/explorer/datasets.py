"""The explorer's data sets: explanation records held in memory (``--data`` and uploads), and what
the page asks of them -- rows filtered, sorted and paged, one row, the words that push toward each
label, and the metrics (accuracy, confusion matrix, confidence histogram).

Every function here reads records only (no model); a query is a dict of the URL's fields (strings),
each checked, a wrong one a :class:`~bert_lrp.views.explorer.errors.ApiError` 400 naming it.
"""
from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ...attribution.records import label_views
from ...data.records import read_explanation_rows
from .errors import ApiError
from .stopwords import STOP_WORDS

MAX_ROWS_PAGE = 500
HISTOGRAM_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # confidence of the predicted label (two labels: >= 0.5)
ROW_QUERY = {"sort", "order", "label", "gold", "correct", "word", "confidence_min", "confidence_max", "offset",
             "limit"}
WORDS_QUERY = {"method", "top", "hide", "min_count"}
HIDDEN = ("stopwords", "punctuation")


@dataclass
class DataSet:
    """A data set: its records (a failed text's record has ``error``), the methods they hold and
    the JSON size of the records (what the explorer's memory bound counts)."""

    id: str
    name: str
    records: List[Dict[str, Any]]
    methods: List[str]
    size: int = field(default=0)

    def __post_init__(self) -> None:
        if not self.size:
            self.size = records_size(self.records)

    def info(self) -> Dict[str, Any]:
        return {"id": self.id, "name": self.name, "rows": len(self.records), "labels": labels_of(self.records),
                "has_gold": any("label" in r for r in self.records), "methods": self.methods,
                "errors": sum("error" in r for r in self.records)}


def records_size(records: Sequence[Dict[str, Any]]) -> int:
    """Bytes of ``records`` as JSON (non-finite floats written as JSON's extension)."""
    return sum(len(json.dumps(record, allow_nan=True)) for record in records)


def read_dataset(dataset_id: str, path: Path) -> DataSet:
    """A JSONL file of ``bert-lrp explain --jsonl`` records
    (:func:`bert_lrp.data.records.read_explanation_rows`): unknown fields dropped, every known field
    checked; a bad line is that row's error, the others are shown. A path that does not exist is a
    :class:`~bert_lrp.errors.RequestError` of the field ``data``; a file without records a DataError."""
    records = read_explanation_rows(path, "data")
    methods = next((list(r["methods"]) for r in records if "methods" in r), [])
    return DataSet(dataset_id, Path(path).name, records, methods)


# ---------------------------------------------------------------------- rows
def gold_name(record: Dict[str, Any]) -> Optional[str]:
    """A record's gold label by name: a label id (``"1"``, as in SST-2's files) becomes the name of
    that label in the record's probabilities (listed in id order); a name stays as it is."""
    gold = record.get("label")
    names = list(record.get("probabilities", {}))
    if gold is None or str(gold) in names:
        return None if gold is None else str(gold)
    text = str(gold).strip()
    return names[int(text)] if text.isascii() and text.isdigit() and int(text) < len(names) else text


def confidence(record: Dict[str, Any]) -> Optional[float]:
    """The probability of the predicted label (None for a failed text)."""
    values = [v for v in record.get("probabilities", {}).values() if isinstance(v, (int, float))]
    return max(values) if values and "error" not in record else None


def row_summary(index: int, record: Dict[str, Any]) -> Dict[str, Any]:
    text = record.get("text", "")
    gold = gold_name(record)
    if "error" in record:
        return {"index": index, "text": text[:200], "prediction": None, "confidence": None,
                "gold": gold, "correct": None, "error": record["error"]}
    prediction = record.get("prediction")
    value = confidence(record)
    return {"index": index, "text": text[:200], "prediction": prediction,
            "confidence": None if value is None else round(value, 4), "gold": gold,
            "correct": None if gold is None else str(gold) == str(prediction), "error": None}


def check_query(query: Dict[str, str], known: set) -> None:
    unknown = sorted(set(query) - known)
    if unknown:
        raise ApiError(400, f"unknown query field {unknown[0][:60]!r}; the fields are {', '.join(sorted(known))}",
                       unknown[0][:60])


def whole(query: Dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """The query's whole number ``name`` (ASCII digits only) in ``low..high``; else 400."""
    if name not in query:
        return default
    text = query[name].strip()
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        raise ApiError(400, f"{name} must be a whole number, got {text[:40]!r}", name)
    value = int(text)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be in {low}..{high}, got {value}", name)
    return value


def fraction(query: Dict[str, str], name: str) -> Optional[float]:
    """The query's number ``name`` in 0..1 (None when absent); else 400."""
    if name not in query or query[name] == "":
        return None
    try:
        value = float(query[name])
    except ValueError:
        raise ApiError(400, f"{name} must be a number in 0..1, got {query[name][:40]!r}", name) from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ApiError(400, f"{name} must be a number in 0..1, got {query[name][:40]!r}", name)
    return value


def row_index(data: DataSet, index: str) -> int:
    """A row number of the URL: ASCII digits only, inside the data set (``-1``, ``١``: 404)."""
    if not (index.isascii() and index.isdigit()) or int(index) >= len(data.records):
        raise ApiError(404, f"data set {data.id} has no row {index[:40]!r} (rows 0..{len(data.records) - 1})",
                       "index")
    return int(index)


def rows(data: DataSet, query: Dict[str, str]) -> Dict[str, Any]:
    """``GET /api/datasets/{id}/rows``: the rows, filtered (predicted ``label``, ``gold`` label,
    ``correct``, ``word``, ``confidence_min``..``confidence_max``), sorted and paged."""
    check_query(query, ROW_QUERY)
    found = [row_summary(i, r) for i, r in enumerate(data.records)]
    if query.get("label"):
        found = [r for r in found if r["prediction"] == query["label"]]
    if query.get("gold"):
        found = [r for r in found if r["gold"] == query["gold"]]
    if query.get("correct") in ("true", "false"):
        wanted = query["correct"] == "true"
        found = [r for r in found if r["correct"] is wanted]
    elif query.get("correct"):
        raise ApiError(400, "correct must be true or false", "correct")
    low, high = fraction(query, "confidence_min"), fraction(query, "confidence_max")
    if low is not None:
        found = [r for r in found if r["confidence"] is not None and r["confidence"] >= low]
    if high is not None:
        found = [r for r in found if r["confidence"] is not None and r["confidence"] <= high]
    if query.get("word"):
        word = query["word"].lower()
        found = [r for r in found if word in words_of(data.records[r["index"]])]
    sort = query.get("sort", "index")
    if sort not in ("index", "confidence", "prediction"):
        raise ApiError(400, "sort must be index, confidence or prediction", "sort")
    order = query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "order must be asc or desc", "order")
    found.sort(key=lambda r: (r[sort] is None, r[sort] if r[sort] is not None else 0, r["index"]),
               reverse=order == "desc")
    offset, limit = whole(query, "offset", 0, 0, 10 ** 9), whole(query, "limit", 100, 1, MAX_ROWS_PAGE)
    return {"total": len(found), "rows": found[offset:offset + limit]}


def words_of(record: Dict[str, Any]) -> set:
    return {w["word"].lower() for w in record.get("words", [])}


def labels_of(records: Sequence[Dict[str, Any]]) -> List[str]:
    labels: List[str] = []
    for record in records:
        for label in record.get("probabilities", {}):
            if label not in labels:
                labels.append(label)
    return labels


# ---------------------------------------------------------------------- words
def is_punctuation(word: str) -> bool:
    """Every character of ``word`` is punctuation or a symbol (Unicode categories P* and S*)."""
    return bool(word) and all(unicodedata.category(c)[0] in "PS" for c in word)


def words(data: DataSet, query: Dict[str, str]) -> Dict[str, Any]:
    """``GET /api/datasets/{id}/words``: per label, the words that most often push toward it;
    ``hide=stopwords,punctuation`` leaves those out, ``min_count`` (default 2) the rarer ones."""
    check_query(query, WORDS_QUERY)
    method = query.get("method") or (data.methods[0] if data.methods else None)
    if method not in data.methods:
        raise ApiError(400, f"method {str(method)[:60]!r} is not in this data set ({', '.join(data.methods)})",
                       "method")
    top = whole(query, "top", 20, 1, 200)
    least = whole(query, "min_count", 2, 1, 10 ** 6)
    hidden = [h for h in query.get("hide", "").split(",") if h]
    wrong = [h for h in hidden if h not in HIDDEN]
    if wrong:
        raise ApiError(400, f"hide takes {' and '.join(HIDDEN)} (comma-separated), got {wrong[0][:40]!r}", "hide")

    def shown(word: str) -> bool:
        stop = "stopwords" in hidden and word in STOP_WORDS
        return not (stop or ("punctuation" in hidden and is_punctuation(word)))

    return {"method": method, "labels": word_pushes(data.records, method, top, least, shown)}


def word_pushes(records: Sequence[Dict[str, Any]], method: str, top: int, min_count: int = 2,
                shown=lambda word: True) -> Dict[str, List[Dict[str, Any]]]:
    """Per explained label, the words (lower-cased, at least ``min_count`` occurrences, ``shown``)
    whose ``method`` score is positive most often, with count, mean and total score."""
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
        found = [{"word": word, "count": sum(s > 0 for s in values), "mean": round(sum(values) / len(values), 6),
                  "total": round(sum(values), 6)} for word, values in table.items()
                 if len(values) >= min_count and shown(word)]
        found = [r for r in found if r["total"] > 0]
        found.sort(key=lambda r: (-r["total"], r["word"]))
        out[label] = found[:top]
    return out


# ---------------------------------------------------------------------- metrics
def metrics(data: DataSet) -> Dict[str, Any]:
    """``GET /api/datasets/{id}/metrics``: rows, failed rows, rows with a gold label, accuracy over
    those (None without any), the confusion matrix (``counts[g][p]``: gold ``g`` predicted ``p``)
    and the histogram of the predicted label's probability, split by correct / wrong / no gold.
    The histogram's bins are ``[edges[i], edges[i+1])``, the last one closed; a lower confidence
    (more than two labels) falls in the first."""
    summaries = [row_summary(i, r) for i, r in enumerate(data.records)]
    explained = [r for r in summaries if r["error"] is None]
    graded = [r for r in explained if r["gold"] is not None]
    labels = labels_of(data.records)
    gold_labels = labels + sorted({r["gold"] for r in graded} - set(labels))
    counts = [[sum(1 for r in graded if r["gold"] == g and r["prediction"] == p) for p in labels]
              for g in gold_labels]
    bins = len(HISTOGRAM_EDGES) - 1
    histogram = {"edges": list(HISTOGRAM_EDGES), "correct": [0] * bins, "wrong": [0] * bins, "no_gold": [0] * bins}
    for row in explained:
        if row["confidence"] is None:
            continue
        slot = next((i for i in range(bins) if row["confidence"] < HISTOGRAM_EDGES[i + 1]), bins - 1)
        key = "no_gold" if row["correct"] is None else "correct" if row["correct"] else "wrong"
        histogram[key][slot] += 1
    right = sum(1 for r in graded if r["correct"])
    return {"rows": len(summaries), "errors": len(summaries) - len(explained), "with_gold": len(graded),
            "accuracy": round(right / len(graded), 6) if graded else None, "labels": labels,
            "confusion": {"gold": gold_labels, "predicted": labels, "counts": counts}, "histogram": histogram}


__all__ = ["DataSet", "HISTOGRAM_EDGES", "metrics", "read_dataset", "row_index", "row_summary", "rows", "words",
           "word_pushes"]
