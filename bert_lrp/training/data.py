"""Training data: the examples of a data file (read by :mod:`bert_lrp.data`, the one reader of
every command: tables and CoNLL), their labels and their encoding into model inputs.

Every problem in a data file is a :class:`DataError` naming the file, the line and the problem.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from ..data import DataError, Example, read_conll, read_table
from ..models.tokenization import BertTokenizer

IGNORE_INDEX = -100
__all__ = ["DataError", "Dataset", "Example", "Features", "IGNORE_INDEX", "encode", "infer_labels",
           "label_ids", "read_conll", "read_examples", "read_table"]


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


# --------------------------------------------------------------------------- reading
def read_examples(path: str | os.PathLike, task: str, **columns) -> List[Example]:
    """The examples of a data file: ``task`` ``"token"`` reads CoNLL sentences, ``"sequence"`` a
    table (:func:`bert_lrp.data.read_table`; ``columns``: ``text_column``, ``pair_column``,
    ``label_column``, None for the known names)."""
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
