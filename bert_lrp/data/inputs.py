"""The texts a command explains or reads: files, stdin (``-``) and arguments, as
:class:`~bert_lrp.data.lines.TextInput` records. A file (or stdin, or an upload) is a table or
plain lines by the one rule of :mod:`bert_lrp.data.tables`."""
from __future__ import annotations

from typing import IO, List, Optional, Sequence

from ..errors import RequestError
from .lines import TextInput, text_lines
from .source import STDIN, read_file, read_stdin
from .tables import parse_table, table_format


def parse_texts(content: str, name: str, pair: Optional[str] = None) -> List[TextInput]:
    """The texts of a file's ``content`` named ``name``: a table's rows (text, pair and gold
    label columns; sources ``"<name>, line <n>"``) or one text per non-blank line. ``pair`` is
    the second text of every input that has none. Blank content holds no text: ``[]``."""
    if not content.strip():
        return []
    layout = table_format(name, content)
    if layout is None:
        return text_lines(content, name, pair)
    return [TextInput(row.text, pair if row.pair is None else row.pair, f"{name}, line {row.line}", row.label)
            for row in parse_table(content, name, layout, label_optional=True)]


def read_file_inputs(path, field: Optional[str] = None, pair: Optional[str] = None) -> List[TextInput]:
    """:func:`parse_texts` of the file ``path`` (``"-"``: stdin). ``field``: the request field
    naming ``path`` (``"file"``), for a path that does not exist."""
    if str(path) == "-":
        return parse_texts(read_stdin(), STDIN, pair)
    return parse_texts(read_file(path, field), str(path), pair)


def read_inputs(texts: Sequence[str] = (), file: Optional[str] = None, pair: Optional[str] = None,
                stdin: Optional[IO] = None) -> List[TextInput]:
    """The texts of ``file`` (see :func:`parse_texts`), then the ``texts``, ``-`` standing for the
    texts of stdin (``stdin``: another stream), read the same way; blank texts are skipped;
    ``pair`` is the second text of every input without one. Nothing to explain at all is a
    :class:`~bert_lrp.errors.RequestError` of the field ``texts``."""
    found: List[TextInput] = []
    if file:
        found += read_file_inputs(file, "file", pair)
    for number, text in enumerate(texts, 1):
        if text == "-":
            found += parse_texts(read_stdin(stdin), STDIN, pair)
        else:
            found.append(TextInput(text, pair, f"argument {number}"))
    found = [item for item in found if item.text.strip()]
    if not found and file:
        raise RequestError("file", f"{file}: no text to explain (the file holds no text)")
    if not found:
        raise RequestError("texts", "no text to explain: give texts, '-' for stdin, or a file")
    return found
