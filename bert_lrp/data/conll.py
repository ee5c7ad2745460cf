"""CoNLL-2003 style files: ``word ... tag`` per line (the word first, the tag last), a blank
line between sentences, ``-DOCSTART-`` lines skipped; every line has as many fields as the
first. Problems are one :class:`~bert_lrp.data.source.DataError` naming file and line."""
from __future__ import annotations

from typing import List, Optional

from .source import DataError, read_file, split_lines
from .tables import Example


def read_conll(path, field: Optional[str] = None) -> List[Example]:
    """One :class:`~bert_lrp.data.tables.Example` per sentence of ``path``: ``text`` its words,
    ``label`` their tags, ``line`` its first line. ``field``: the request field naming ``path``."""
    return parse_conll(read_file(path, field), str(path))


def parse_conll(content: str, name: str) -> List[Example]:
    """The sentences of a CoNLL file's ``content`` (see :func:`read_conll`)."""
    if not content.strip():
        raise DataError(f"{name}: the file is empty")
    examples: List[Example] = []
    words: List[str] = []
    tags: List[str] = []
    start, width = 0, None
    for number, line in enumerate(split_lines(content) + [""], 1):
        fields = line.split()
        if not fields:
            if words:
                examples.append(Example(text=words, label=tags, source=name, line=start))
            words, tags = [], []
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if width is None:
            width = len(fields)
            if width < 2:
                raise DataError(f"{name}, line {number}: expected at least a word and a tag, got {line[:80]!r}")
        elif len(fields) != width:
            raise DataError(f"{name}, line {number}: expected {width} fields as on the first line, "
                            f"got {len(fields)}: {line[:80]!r}")
        if not words:
            start = number
        words.append(fields[0])
        tags.append(fields[-1])
    if not examples:
        raise DataError(f"{name}: no sentences found")
    return examples
