"""Explanation records: the JSON lines ``bert-lrp explain --jsonl`` writes (one
:meth:`~bert_lrp.attribution.records.TextExplanation.record` per line, or a failed text's
``{"index", "source", "text", "error"}``), read back by the explorer's ``--data`` and anything
else that reads them.

A record is checked field by field when read and never trusted: every field is one this
project writes, with its type (texts and names are strings; ``index``, positions, pieces,
``attention.layer`` / ``attention.head`` are whole numbers in range; every score is a finite
number, except the ratios ``conservation`` and ``extras``, which are infinite or NaN when their
denominator is 0; per-token scores have one value per token, per-word scores one per word). The first
record that fails makes reading fail with one :class:`~bert_lrp.data.source.DataError`:
``FILE, line N: field F: problem``. Strings are kept as they are (markup included): views
escape what they show.

:func:`read_explanation_rows` reads a file a server shows (the explorer's ``--data``) instead:
unknown fields are dropped (at every level of the schema), every known field is checked as above,
and a line that is no good record becomes that row's failed-text record (``index``, ``source``,
``text``, ``error``: the one line saying why), so one bad line never hides the others.
"""
from __future__ import annotations

import math
import re
import copy
from typing import Any, Dict, List, Optional, Sequence

from .source import DataError, parse_json, read_file, split_lines

METHOD_NAME = re.compile(r"[A-Za-z0-9_.:+-]{1,100}")
FAILED_FIELDS = {"index", "source", "text", "pair", "label", "error"}
RECORD_FIELDS = FAILED_FIELDS - {"error"} | {
    "prediction", "probabilities", "logits", "tokens", "words", "methods", "target_position", "target_word",
    "labels", "windows", "dropped_tokens", "attention"}
ENTRY_FIELDS = {"target", "target_logit", "scores", "conservation", "embedding_shares", "extras", "relevance",
                "layer_scores"}
WORD_FIELDS = {"word", "start", "end", "sequence", "pieces"}
ALL = "all"


def read_explanations(path, field: Optional[str] = None) -> List[Dict[str, Any]]:
    """The records of the JSON-lines file ``path``, each checked (see the module docstring);
    blank lines are skipped; a file without records is refused. ``field``: the request field
    naming ``path`` (``"data"``)."""
    name = str(path)
    records = []
    for number, line in enumerate(split_lines(read_file(path, field)), 1):
        if line.strip():
            records.append(check_record(parse_json(line, f"{name}, line {number}"), f"{name}, line {number}"))
    if not records:
        raise DataError(f"{name}: the file is empty (no explanation records)")
    return records


def read_explanation_rows(path, field: Optional[str] = None) -> List[Dict[str, Any]]:
    """The records of the JSON-lines file ``path`` as rows a server shows: each cleaned and checked
    (:func:`check_record` with ``drop_unknown``); a line that is no record becomes
    ``{"index", "source", "text", "error"}`` saying why (``text``: the record's own text when it
    is a string, else ``""``). Blank lines are skipped; a file without records is refused."""
    name = str(path)
    rows: List[Dict[str, Any]] = []
    for number, line in enumerate(split_lines(read_file(path, field)), 1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        parsed: Any = None
        try:
            parsed = parse_json(line, where)
            rows.append(check_record(parsed, where, drop_unknown=True))
        except DataError as error:
            text = parsed.get("text") if isinstance(parsed, dict) else None
            rows.append({"index": len(rows), "source": where, "text": text if isinstance(text, str) else "",
                         "error": str(error)})
    if not rows:
        raise DataError(f"{name}: the file is empty (no explanation records)")
    return rows


def check_record(record: Any, where: str, drop_unknown: bool = False) -> Dict[str, Any]:
    """``record`` if it is a well-formed explanation record, else a :class:`DataError` naming
    ``where`` and the first field at fault. ``drop_unknown``: a copy of ``record`` without the
    fields the schema does not know (at every level) is checked and returned instead."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: not an explanation record (a JSON object expected, "
                        f"got {type(record).__name__})")
    if drop_unknown:
        record = copy.deepcopy(record)
    _Record(record, where, drop_unknown).check()
    return record


class _Record:
    """The checks of one record; ``fail`` names the field."""

    def __init__(self, record: Dict[str, Any], where: str, drop_unknown: bool = False) -> None:
        self.record, self.where, self.drop_unknown = record, where, drop_unknown

    def fail(self, field: str, problem: str) -> None:
        raise DataError(f"{self.where}: field {field}: {problem}")

    # ---------------------------------------------------------- values
    def value(self, parent: Dict[str, Any], key: str, field: str, required: bool = True) -> Any:
        if key not in parent:
            if required:
                self.fail(field, "missing")
            return None
        return parent[key]

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {_kind(value)}")
        return value

    def whole(self, value: Any, field: str, low: int = 0, high: Optional[int] = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(field, f"must be a whole number, got {_kind(value)}")
        if value < low or (high is not None and value > high):
            self.fail(field, f"{value} is outside {low}..{'' if high is None else high}")
        return value

    def number(self, value: Any, field: str, finite: bool = True) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.fail(field, f"must be a number, got {_kind(value)}")
        if finite and not math.isfinite(value):
            self.fail(field, f"must be a finite number, got {value}")
        return value

    def numbers(self, value: Any, field: str, length: Optional[int]) -> List[float]:
        items = self.items(value, field)
        if length is not None and len(items) != length:
            self.fail(field, f"holds {len(items)} values, expected {length}")
        for index, item in enumerate(items):
            self.number(item, f"{field}[{index}]")
        return items

    def items(self, value: Any, field: str) -> list:
        if not isinstance(value, list):
            self.fail(field, f"must be a list, got {_kind(value)}")
        return value

    def mapping(self, value: Any, field: str, allowed: Optional[set] = None) -> Dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, f"must be an object, got {_kind(value)}")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown and self.drop_unknown:
                for key in unknown:
                    del value[key]
            elif unknown:
                self.fail(f"{field}.{unknown[0]}" if field else unknown[0], "not a field of an explanation record")
        return value

    def method(self, name: str, field: str) -> str:
        if name not in self.methods:
            self.fail(field, f"method {_short(name)} is not in the record's methods")
        return name

    # ---------------------------------------------------------- the record
    def check(self) -> None:
        record = self.record
        failed = "error" in record
        self.mapping(record, "", FAILED_FIELDS if failed else RECORD_FIELDS | ENTRY_FIELDS)
        self.whole(self.value(record, "index", "index"), "index")
        for key in ("source", "text"):
            self.string(self.value(record, key, key), key)
        for key in ("pair", "label", "error"):
            if key in record:
                self.string(record[key], key)
        if not failed:
            self.explained()

    def explained(self) -> None:
        record = self.record
        probabilities = self.mapping(self.value(record, "probabilities", "probabilities"), "probabilities")
        self.label_numbers(probabilities, "probabilities")
        self.names = list(probabilities)
        logits = self.mapping(self.value(record, "logits", "logits"), "logits")
        if list(logits) != self.names:
            self.fail("logits", "must name the labels of probabilities, in the same order")
        self.label_numbers(logits, "logits")
        self.label(self.value(record, "prediction", "prediction"), "prediction")
        self.tokens = [self.string(t, f"tokens[{i}]") for i, t in
                       enumerate(self.items(self.value(record, "tokens", "tokens"), "tokens"))]
        self.words = [self.word(w, f"words[{i}]") for i, w in
                      enumerate(self.items(self.value(record, "words", "words"), "words"))]
        self.methods = [self.string(m, f"methods[{i}]") for i, m in
                        enumerate(self.items(self.value(record, "methods", "methods"), "methods"))]
        for index, name in enumerate(self.methods):
            if not METHOD_NAME.fullmatch(name):
                self.fail(f"methods[{index}]", f"{_short(name)} is not a method name")
        self.positions(record)
        if record.get("target") == ALL:
            labels = self.mapping(self.value(record, "labels", "labels"), "labels")
            for name, entry in labels.items():
                self.label(name, f"labels.{_short(name)}")
                field = f"labels.{_short(name)}"
                self.entry(self.mapping(entry, field, ENTRY_FIELDS), field + ".", name)
            extra = sorted(set(record) & (ENTRY_FIELDS - {"target"}))
            if extra:
                self.fail(extra[0], 'not a field of a record with target "all" (see its labels)')
        else:
            if "labels" in record:
                self.fail("labels", 'only a record with target "all" has labels')
            self.entry(record, "", None)

    def label(self, name: Any, field: str) -> str:
        self.string(name, field)
        if name not in self.names:
            self.fail(field, f"{_short(name)} is not a label of probabilities")
        return name

    def label_numbers(self, values: Dict[str, Any], field: str) -> None:
        for name, value in values.items():
            self.number(value, f"{field}.{_short(name)}")

    def word(self, word: Any, field: str) -> Dict[str, Any]:
        self.mapping(word, field, WORD_FIELDS)
        self.string(self.value(word, "word", f"{field}.word"), f"{field}.word")
        start = self.whole(self.value(word, "start", f"{field}.start"), f"{field}.start")
        self.whole(self.value(word, "end", f"{field}.end"), f"{field}.end", start)
        if word.get("sequence") is not None:
            self.whole(word["sequence"], f"{field}.sequence", 0, 1)
        pieces = self.items(self.value(word, "pieces", f"{field}.pieces"), f"{field}.pieces")
        if not pieces:
            self.fail(f"{field}.pieces", "must name at least one piece")
        for index, piece in enumerate(pieces):
            self.whole(piece, f"{field}.pieces[{index}]", 0, len(self.tokens) - 1)
        return word

    def positions(self, record: Dict[str, Any]) -> None:
        last = len(self.tokens) - 1
        if "target_position" in record:
            self.whole(record["target_position"], "target_position", 0, last)
        if "target_word" in record:
            chosen = self.mapping(record["target_word"], "target_word", {"index", "word", "position"})
            self.whole(self.value(chosen, "index", "target_word.index"), "target_word.index", 0, len(self.words) - 1)
            self.string(self.value(chosen, "word", "target_word.word"), "target_word.word")
            self.whole(self.value(chosen, "position", "target_word.position"), "target_word.position", 0, last)
        if "windows" in record:
            self.whole(record["windows"], "windows", 1)
        if "dropped_tokens" in record:
            self.whole(record["dropped_tokens"], "dropped_tokens", 0)
        if "attention" in record:
            attention = self.mapping(record["attention"], "attention", {"layer", "head", "matrix"})
            self.whole(self.value(attention, "layer", "attention.layer"), "attention.layer", 1)
            self.whole(self.value(attention, "head", "attention.head"), "attention.head", 1)
            rows = self.items(self.value(attention, "matrix", "attention.matrix"), "attention.matrix")
            if len(rows) > len(self.tokens):
                self.fail("attention.matrix", f"holds {len(rows)} rows for {len(self.tokens)} tokens")
            for index, row in enumerate(rows):
                self.numbers(row, f"attention.matrix[{index}]", len(rows))

    # ---------------------------------------------------------- one label's scores
    def entry(self, entry: Dict[str, Any], prefix: str, name: Optional[str]) -> None:
        target = self.label(self.value(entry, "target", prefix + "target"), prefix + "target")
        if name is not None and target != name:
            self.fail(prefix + "target", f"{_short(target)} under the label {_short(name)}")
        self.number(self.value(entry, "target_logit", prefix + "target_logit"), prefix + "target_logit")
        tokens, words = len(self.tokens), len(self.words)
        for method, scores in self.mapping(self.value(entry, "scores", prefix + "scores"), prefix + "scores").items():
            field = f"{prefix}scores.{_short(method)}"
            self.method(method, field)
            self.mapping(scores, field, {"tokens", "words"})
            self.numbers(self.value(scores, "tokens", field + ".tokens"), field + ".tokens", tokens)
            self.numbers(self.value(scores, "words", field + ".words"), field + ".words", words)
        for key in ("conservation", "extras"):  # ratios: infinite or NaN when their denominator is 0
            for method, value in self.mapping(entry.get(key, {}), prefix + key).items():
                self.number(value, f"{prefix}{key}.{_short(method)}", finite=False)
        for method, parts in self.mapping(entry.get("embedding_shares", {}), prefix + "embedding_shares").items():
            field = f"{prefix}embedding_shares.{_short(method)}"
            self.method(method, field)
            for part, values in self.mapping(parts, field).items():
                self.numbers(values, f"{field}.{_short(part)}", words)
        for method, rows in self.mapping(entry.get("relevance", {}), prefix + "relevance").items():
            field = f"{prefix}relevance.{_short(method)}"
            self.method(method, field)
            rows = self.items(rows, field)
            if len(rows) != tokens:
                self.fail(field, f"holds {len(rows)} rows, expected one per token ({tokens})")
            width = len(rows[0]) if rows and isinstance(rows[0], list) else None
            for index, row in enumerate(rows):
                self.numbers(row, f"{field}[{index}]", width)
        for method, layers in self.mapping(entry.get("layer_scores", {}), prefix + "layer_scores").items():
            field = f"{prefix}layer_scores.{_short(method)}"
            self.method(method, field)
            for index, row in enumerate(self.items(layers, field)):
                self.numbers(row, f"{field}[{index}]", tokens)


def _kind(value: Any) -> str:
    return "null" if value is None else {dict: "an object", list: "a list", str: "a string", bool: "true/false"}.get(
        type(value), type(value).__name__)


def _short(name: Any, limit: int = 40) -> str:
    """A name inside a field path: as it is when it looks like a name, else quoted and cut."""
    text = str(name)
    if len(text) <= limit and METHOD_NAME.fullmatch(text):
        return text
    return repr(text if len(text) <= limit else text[:limit] + "…")


__all__: Sequence[str] = ("check_record", "read_explanation_rows", "read_explanations")
