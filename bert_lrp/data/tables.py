"""Tables: ``.tsv`` / ``.csv`` files with a header, and JSON lines with named fields.

The ONE rule of every command (``explain --file``, ``explain --jsonl``, ``evaluate``,
``tune-lrp``, ``train``, ``inspect``, the explorer's upload):

* **Which file is a table.** A ``.tsv`` or ``.csv`` file always is (its first non-blank line is
  the header); a ``.jsonl`` / ``.ndjson`` / ``.json`` file is a table of JSON objects, one per
  line; any other file (or stdin, or an upload) is a table when its first non-blank line is
  tab-separated and one of its cells is a known column name; otherwise it is plain lines
  (:mod:`bert_lrp.data.lines`).
* **Which column is which.** Names are matched without regard to case and surrounding spaces
  (``Sentence``, `` sentence ``, ``SENTENCE`` all mean ``sentence``). The text is the first of
  :data:`TEXT_COLUMNS` found, its pair the first of :data:`PAIR_COLUMNS`, the gold label
  :data:`LABEL_COLUMN`; a caller may name other columns (``train --text-column``).
* **What is refused**, as one :class:`~bert_lrp.data.source.DataError` naming file and line: a
  header naming no text column (the message lists the columns seen), a column named twice, a row
  with another number of cells than the header, an empty text or pair, an empty label in a
  table that has labels, a missing label where one is required, an empty file, a header without
  rows. Cells are stripped of surrounding spaces; blank rows are skipped.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .source import DataError, parse_json_object, read_file, split_lines

TEXT_COLUMNS = ("sentence", "sentence1", "text")   # a table's text column: the first found
PAIR_COLUMNS = ("sentence2", "pair")               # its second text, if any
LABEL_COLUMN = "label"                             # its gold label, if any
KNOWN_COLUMNS = TEXT_COLUMNS + PAIR_COLUMNS + (LABEL_COLUMN,)
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")
MAX_SHOWN_COLUMNS = 20   # a refusal lists at most this many header cells ...
MAX_SHOWN_NAME = 40      # ... each cut to this many characters

Column = Union[str, int, None]   # a column name, a 0-based index, or None (the known names)


@dataclass
class Example:
    """One row of a data file. ``text`` is a string, or a list of words (CoNLL); ``label`` a
    label name, one tag per word, or None (no label column); ``line`` the 1-based line of the
    row in ``source``."""

    text: Union[str, List[str]]
    label: Union[str, List[str], None]
    pair: Optional[str] = None
    source: str = ""
    line: int = 0


def column_key(name: str) -> str:
    """A column name as matched: without case and surrounding spaces (``" Sentence "`` -> ``"sentence"``)."""
    return name.strip().lower()


def table_format(name: str, content: str) -> Optional[str]:
    """``"tsv"``, ``"csv"``, ``"jsonl"``, or None (plain lines) for the file ``name`` holding
    ``content`` (see the module docstring)."""
    lower = name.lower()
    if lower.endswith(".tsv"):
        return "tsv"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(JSON_LINES_SUFFIXES):
        return "jsonl"
    first = next((line for line in split_lines(content) if line.strip()), "")
    if "\t" in first and any(column_key(cell) in KNOWN_COLUMNS for cell in first.split("\t")):
        return "tsv"
    return None


def read_table(path, text_column: Column = None, label_column: Column = LABEL_COLUMN, pair_column: Column = None,
               label_optional: bool = False, field: Optional[str] = None) -> List[Example]:
    """The rows of the table file ``path`` (any name; a file that is not recognisably a table
    is read as a tab-separated one, so that its first line is refused as a header naming no
    text column). ``text_column`` / ``pair_column``: None picks the known names;
    ``label_column``: None reads no labels; ``label_optional``: a table without the label
    column reads as if it were None. ``field``: the request field naming ``path``."""
    name = str(path)
    content = read_file(path, field)
    return parse_table(content, name, table_format(name, content) or "tsv", text_column, label_column,
                       pair_column, label_optional)


def parse_table(content: str, name: str, layout: str = "tsv", text_column: Column = None,
                label_column: Column = LABEL_COLUMN, pair_column: Column = None,
                label_optional: bool = False) -> List[Example]:
    """The rows of a table's ``content`` (``layout``: ``"tsv"``, ``"csv"`` or ``"jsonl"``);
    sources are ``name``. See :func:`read_table`."""
    if not content.strip():
        raise DataError(f"{name}: the file is empty")
    if layout == "jsonl":
        return _json_rows(content, name, text_column, label_column, pair_column, label_optional)
    rows = _csv_rows(content, name) if layout == "csv" else _tsv_rows(content)
    rows = ((number, cells) for number, cells in rows if any(cell.strip() for cell in cells))
    first = next(rows, None)
    if first is None:
        raise DataError(f"{name}: the file is empty")
    header_line, header = first
    keys = [column_key(cell) for cell in header]
    where = f"{name}, line {header_line}"
    _refuse_doubles(keys, where)
    text_index = _column(keys, header, text_column, TEXT_COLUMNS, "text", where, required=True)
    pair_index = _column(keys, header, pair_column, PAIR_COLUMNS, "pair", where, required=pair_column is not None)
    label_index = None
    if label_column is not None:
        label_index = _column(keys, header, label_column, (), "label", where, required=not label_optional)
    examples = []
    for number, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"{name}, line {number}: expected {len(header)} fields as in the header, got {len(cells)}")
        cell = lambda index: None if index is None else cells[index]  # noqa: E731
        examples.append(_example(name, number, cell(text_index), cell(label_index), cell(pair_index)))
    if not examples:
        raise DataError(f"{name}: the file has a header but no examples")
    return examples


# ------------------------------------------------------------------ rows
def _tsv_rows(content: str) -> Iterator[Tuple[int, List[str]]]:
    for number, line in enumerate(split_lines(content), 1):
        yield number, line.split("\t")


def _csv_rows(content: str, name: str) -> Iterator[Tuple[int, List[str]]]:
    """CSV records with the line each starts on (a quoted cell may span lines)."""
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataError(f"{name}, line {reader.line_num}: not valid CSV ({error})") from None
        yield start, cells
        start = reader.line_num + 1


def _shown(cells: Sequence[str]) -> str:
    names = [cell.strip() if len(cell.strip()) <= MAX_SHOWN_NAME else cell.strip()[:MAX_SHOWN_NAME] + "…"
             for cell in cells[:MAX_SHOWN_COLUMNS]]
    more = f" (+{len(cells) - MAX_SHOWN_COLUMNS} more)" if len(cells) > MAX_SHOWN_COLUMNS else ""
    return ", ".join(repr(n) if not n or "," in n else n for n in names) + more


def _refuse_doubles(keys: List[str], where: str) -> None:
    for index, key in enumerate(keys):
        if key in KNOWN_COLUMNS and key in keys[:index]:
            raise DataError(f"{where}: the column {key!r} is named twice in the header")


def _column(keys: List[str], header: List[str], wanted: Column, known: Sequence[str], role: str, where: str,
            required: bool) -> Optional[int]:
    """The index of the ``role`` column: ``wanted`` (a name or an index), else the first of
    ``known`` (for the label: :data:`LABEL_COLUMN`) found; None when absent and not ``required``."""
    if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.strip().isdigit()):
        index = int(wanted)
        if index >= len(header):
            raise DataError(f"{where}: {role} column {index} does not exist; the header has {len(header)} "
                            f"columns: {_shown(header)}")
        return index
    if wanted is not None:
        if column_key(wanted) in keys:
            return keys.index(column_key(wanted))
        if required:
            raise DataError(f"{where}: missing {role} column {column_key(wanted)!r}; the header has: {_shown(header)}")
        return None
    found = next((keys.index(key) for key in known if key in keys), None)
    if found is None and required:
        raise DataError(f"{where}: no {role} column (a table needs one named {_names(known)}); the header has: "
                        f"{_shown(header)}")
    return found


def _names(known: Sequence[str]) -> str:
    return known[0] if len(known) == 1 else ", ".join(known[:-1]) + " or " + known[-1]


# ------------------------------------------------------------------ JSON lines
def _json_rows(content: str, name: str, text_column: Column, label_column: Column, pair_column: Column,
               label_optional: bool) -> List[Example]:
    """One example per JSON object (one per non-blank line); keys matched as column names; the
    first object decides whether an optional label is there."""
    examples: List[Example] = []
    for number, line in enumerate(split_lines(content), 1):
        if not line.strip():
            continue
        fields = parse_json_object(line, f"{name}, line {number}")
        where = f"{name}, line {number}"
        if label_optional and not examples and label_column is not None and \
                _key(fields, label_column, (LABEL_COLUMN,)) is None:
            label_column = None
        values: Dict[str, Optional[str]] = {}
        for role, wanted, known, required in (("text", text_column, TEXT_COLUMNS, True),
                                              ("pair", pair_column, PAIR_COLUMNS, pair_column is not None),
                                              ("label", label_column, (LABEL_COLUMN,), label_column is not None)):
            if role == "label" and label_column is None:
                values[role] = None
                continue
            key = _key(fields, wanted, known)
            if key is None and required:
                what = repr(column_key(wanted)) if isinstance(wanted, str) else f"({_names(known)})"
                raise DataError(f"{where}: missing {role} field {what}; the object has: {_shown(list(fields))}")
            values[role] = None if key is None else _json_cell(fields[key], where, key, role)
        examples.append(_example(name, number, values["text"], values["label"], values["pair"]))
    if not examples:
        raise DataError(f"{name}: the file is empty")
    return examples


def _key(fields: Dict[str, Any], wanted: Column, known: Sequence[str]) -> Optional[str]:
    keys = {column_key(key): key for key in reversed(list(fields))}  # the first of keys alike
    if isinstance(wanted, str):
        return keys.get(column_key(wanted))
    return next((keys[key] for key in known if key in keys), None)


def _json_cell(value: Any, where: str, key: str, role: str) -> str:
    if isinstance(value, str):
        return value
    if role == "label" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    expected = "a string or a whole number" if role == "label" else "a string"
    raise DataError(f"{where}: field {key!r} ({role}) must be {expected}, got {type(value).__name__}")


# ------------------------------------------------------------------ one row
def _example(name: str, number: int, text: Optional[str], label: Optional[str], pair: Optional[str]) -> Example:
    if text is None or not text.strip():
        raise DataError(f"{name}, line {number}: the text is empty")
    if pair is not None and not pair.strip():
        raise DataError(f"{name}, line {number}: the pair text is empty")
    if label is not None and not label.strip():
        raise DataError(f"{name}, line {number}: the label is empty")
    return Example(text=text.strip(), label=None if label is None else label.strip(),
                   pair=None if pair is None else pair.strip(), source=name, line=number)
