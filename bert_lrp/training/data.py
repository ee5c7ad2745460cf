"""Data set readers (TSV/CSV/JSON lines, CoNLL) and their encoding into model inputs.

Every problem in a data file is a :class:`DataError` naming the file, the line and the problem.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from .._io import decode_utf8
from ..errors import BertLrpError
from ..models.tokenization import BertTokenizer

IGNORE_INDEX = -100


class DataError(BertLrpError, ValueError):
    """A data file is missing, empty or malformed; the message names file, line and problem."""


@dataclass
class Example:
    """One labelled example. ``text`` is a string, or a list of words for token classification;
    ``label`` is a class name, or one tag per word (None when the table has no label column);
    ``line`` is the 1-based line in ``source``."""

    text: Union[str, List[str]]
    label: Union[str, List[str], None]
    pair: Optional[str] = None
    source: str = ""
    line: int = 0


@dataclass
class Features:
    """An encoded example: unpadded ``input_ids``/``token_type_ids`` and the target
    (a class id, or one id per word piece with :data:`IGNORE_INDEX` for all but first pieces)."""

    input_ids: List[int]
    token_type_ids: List[int]
    label: Union[int, List[int]]
    word_ids: Optional[List[Optional[int]]] = None

    def __len__(self) -> int:
        return len(self.input_ids)


# --------------------------------------------------------------------------- readers
def _open_lines(path: str) -> List[str]:
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a data file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: data file not found")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = decode_utf8(data, path)
    except BertLrpError as error:
        raise DataError(str(error)) from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: the file is empty")
    return lines


def _column_index(path: str, header: Sequence[str], column: Union[str, int], role: str) -> int:
    if isinstance(column, int) or str(column).isdigit():
        index = int(column)
        if index >= len(header):
            raise DataError(f"{path}, line 1: {role} column {index} does not exist; the header has "
                            f"{len(header)} columns: {', '.join(header)}")
        return index
    if column not in header:
        raise DataError(f"{path}, line 1: missing {role} column {column!r}; the header has: {', '.join(header)}")
    return list(header).index(column)


def read_table(path: str | os.PathLike, text_column: Union[str, int] = "sentence",
               label_column: Union[str, int, None] = "label", pair_column: Union[str, int, None] = None,
               label_optional: bool = False) -> List[Example]:
    """Read a ``.tsv`` (tab-separated, no quoting), ``.csv`` or ``.jsonl`` file with named columns.

    TSV/CSV files need a header line; JSON lines need one object per line with those keys. The
    file must be UTF-8. ``label_column=None``: no labels (``Example.label`` is None);
    ``label_optional``: a file without the label column (in its header, or in its first JSON
    object) reads as if ``label_column`` were None; a file that has it needs a label on every row.
    Every problem is a :class:`DataError` naming the file and the line.
    """
    path = os.fspath(path)
    lines = _open_lines(path)
    if path.endswith((".jsonl", ".json", ".ndjson")):
        return _read_jsonl(path, lines, text_column, label_column, pair_column, label_optional)
    if path.endswith(".csv"):
        rows = [(reader.line_num, row) for reader in [csv.reader(lines)] for row in reader]
    else:
        rows = [(number, line.split("\t")) for number, line in enumerate(lines, 1)]
    rows = [(number, row) for number, row in rows if any(cell.strip() for cell in row)]
    header_line, header = rows[0]
    header = [cell.strip() for cell in header]
    text_index = _column_index(path, header, text_column, "text")
    if label_optional and label_column is not None and not isinstance(label_column, int) \
            and not str(label_column).isdigit() and label_column not in header:
        label_column = None
    label_index = None if label_column is None else _column_index(path, header, label_column, "label")
    pair_index = None if pair_column is None else _column_index(path, header, pair_column, "pair")
    examples = []
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path}, line {number}: expected {len(header)} fields as in the header, "
                            f"got {len(row)}")
        examples.append(_example(path, number, row[text_index], None if label_index is None else row[label_index],
                                 None if pair_index is None else row[pair_index]))
    if not examples:
        raise DataError(f"{path}: the file has a header but no examples")
    return examples


def _read_jsonl(path: str, lines: List[str], text_column, label_column, pair_column,
                label_optional: bool = False) -> List[Example]:
    examples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        if label_optional and not examples and label_column is not None and label_column not in record:
            label_column = None
        for role, key in (("text", text_column), ("label", label_column), ("pair", pair_column)):
            if key is not None and key not in record:
                raise DataError(f"{path}, line {number}: missing {role} field {key!r}; "
                                f"the object has: {', '.join(record)}")
        examples.append(_example(path, number, str(record[text_column]),
                                 None if label_column is None else str(record[label_column]),
                                 None if pair_column is None else str(record[pair_column])))
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def _example(path: str, number: int, text: str, label: Optional[str], pair: Optional[str]) -> Example:
    if not text.strip():
        raise DataError(f"{path}, line {number}: the text is empty")
    if pair is not None and not pair.strip():
        raise DataError(f"{path}, line {number}: the pair text is empty")
    if label is not None and not label.strip():
        raise DataError(f"{path}, line {number}: the label is empty")
    return Example(text=text.strip(), label=None if label is None else label.strip(),
                   pair=None if pair is None else pair.strip(), source=path, line=number)


def read_conll(path: str | os.PathLike) -> List[Example]:
    """Read CoNLL-2003 style data: ``word ... tag`` per line (word first, tag last), a blank line
    between sentences; ``-DOCSTART-`` lines are skipped. Every line of a file has the same
    number of fields."""
    path = os.fspath(path)
    lines = _open_lines(path)
    examples: List[Example] = []
    words: List[str] = []
    tags: List[str] = []
    start, width = 0, None
    for number, line in enumerate(lines + [""], 1):
        fields_ = line.split()
        if not fields_:
            if words:
                examples.append(Example(text=words, label=tags, source=path, line=start))
            words, tags = [], []
            continue
        if fields_[0] == "-DOCSTART-":
            continue
        if width is None:
            width = len(fields_)
            if width < 2:
                raise DataError(f"{path}, line {number}: expected at least a word and a tag, got {line!r}")
        elif len(fields_) != width:
            raise DataError(f"{path}, line {number}: expected {width} fields as on the first line, "
                            f"got {len(fields_)}: {line!r}")
        if not words:
            start = number
        words.append(fields_[0])
        tags.append(fields_[-1])
    if not examples:
        raise DataError(f"{path}: no sentences found")
    return examples


def read_examples(path: str | os.PathLike, task: str, **columns) -> List[Example]:
    """``task`` is ``"sequence"`` (tables) or ``"token"`` (CoNLL)."""
    return read_conll(path) if task == "token" else read_table(path, **columns)


# --------------------------------------------------------------------------- labels
def infer_labels(examples: Sequence[Example]) -> List[str]:
    """The sorted label set of ``examples`` (numerically if all labels are integers; for tags,
    ``O`` first, then by entity type and prefix)."""
    values = set()
    for example in examples:
        values.update(example.label if isinstance(example.label, list) else [example.label])
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    if any("-" in v for v in values):
        return sorted(values, key=lambda v: (v != "O", v.split("-", 1)[-1], v))
    return sorted(values)


def label_ids(example: Example, label2id: Dict[str, int]) -> Union[int, List[int]]:
    if example.label is None:
        raise DataError(f"{example.source}, line {example.line}: no label")
    labels = example.label if isinstance(example.label, list) else [example.label]
    for label in labels:
        if label not in label2id:
            raise DataError(f"{example.source}, line {example.line}: unknown label {label!r}; "
                            f"known labels: {', '.join(label2id)}")
    ids = [label2id[label] for label in labels]
    return ids if isinstance(example.label, list) else ids[0]


# --------------------------------------------------------------------------- encoding
def encode(examples: Sequence[Example], tokenizer: BertTokenizer, label2id: Dict[str, int],
           max_length: int = 128, chunk: int = 512) -> List[Features]:
    """Tokenize ``examples`` (truncating to ``max_length``) into unpadded :class:`Features`.

    For word lists the label goes to the first word piece of each word, the other pieces get
    :data:`IGNORE_INDEX`; words cut off by truncation get no label (evaluation counts them as ``O``).
    """
    features: List[Features] = []
    for begin in range(0, len(examples), chunk):
        part = examples[begin:begin + chunk]
        split = isinstance(part[0].text, list)
        pairs = [e.pair for e in part] if part[0].pair is not None else None
        encoding = tokenizer([e.text for e in part], pairs, padding=True, truncation=True,
                             max_length=max_length, is_split_into_words=split)
        lengths = encoding["attention_mask"].sum(dim=1).tolist()
        for row, (example, length) in enumerate(zip(part, lengths)):
            ids = encoding["input_ids"][row, :length].tolist()
            types = encoding["token_type_ids"][row, :length].tolist()
            target = label_ids(example, label2id)
            words = None
            if split:
                words = encoding.word_ids[row][:length]
                target = _align(words, target)
            features.append(Features(ids, types, target, words))
    return features


def _align(word_ids: List[Optional[int]], tags: List[int]) -> List[int]:
    aligned, previous = [], None
    for word in word_ids:
        aligned.append(tags[word] if word is not None and word != previous else IGNORE_INDEX)
        previous = word
    return aligned


@dataclass
class Dataset:
    """Examples with their encoded features; ``lengths`` in word pieces."""

    examples: List[Example]
    features: List[Features] = field(default_factory=list)

    @property
    def lengths(self) -> List[int]:
        return [len(f) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)
