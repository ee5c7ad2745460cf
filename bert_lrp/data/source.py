"""Where input text comes from: a file or stdin, decoded strictly as UTF-8 and cut into lines.

Every reader of :mod:`bert_lrp.data` starts here, so every input file follows the same rules:

* UTF-8 only; a leading byte order mark is dropped; an invalid byte is a :class:`DataError`
  naming the file, the line and the byte;
* a NUL byte (a binary file given by mistake) is a :class:`DataError` naming file and line;
* lines end with ``\\n`` or ``\\r\\n``; other control characters stay inside their line;
* a path that does not exist or is a folder is a :class:`~bert_lrp.errors.RequestError` of the
  ``field`` that named it (``"file"``, ``"data"``) when the caller says which, else a
  :class:`DataError` naming the path.
"""
from __future__ import annotations

import json
import os
import sys
from typing import IO, Any, Dict, List, Optional

from ..errors import InputFileError, RequestError, unicode_message

STDIN = "stdin"  # the name of standard input in messages and sources


class DataError(InputFileError, ValueError):
    """An input file (or stdin) exists but cannot be used: not UTF-8, empty, not the expected
    format. The message is one line naming the file, the line and the problem."""


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8 (a leading byte order mark dropped). Invalid bytes or a NUL
    byte raise :class:`DataError` naming ``source``, the line and the column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(unicode_message(error, source)) from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        column = nul - (text.rfind("\n", 0, nul) + 1) + 1
        raise DataError(f"{source}, line {line}: a NUL byte at column {column}: a binary file, not text")
    return text


def _missing(path: str, problem: str, field: Optional[str]) -> Exception:
    return RequestError(field, f"{path}: {problem}") if field else DataError(f"{path}: {problem}")


def read_file(path: str | os.PathLike, field: Optional[str] = None) -> str:
    """The text of the file ``path`` (see the module docstring). ``field``: the request field
    that named the path (``"file"``, ``"data"``), for the error of a path that does not exist."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise _missing(path, "is a folder, expected a data file", field)
    if not os.path.exists(path):
        raise _missing(path, "no such file", field)
    with open(path, "rb") as handle:
        data = handle.read()
    return decode_utf8(data, path)


def read_stdin(stream: Optional[IO] = None) -> str:
    """The text of standard input (``stream``: another stream), strictly UTF-8; a text stream
    without bytes underneath (``io.StringIO``) is taken as it is, NUL bytes still refused."""
    stream = sys.stdin if stream is None else stream
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return decode_utf8(stream.read().encode("utf-8", "surrogatepass"), STDIN)
    return decode_utf8(buffer.read(), STDIN)


def split_lines(text: str) -> List[str]:
    """``text`` cut at ``\\n`` (a ``\\r`` before it dropped): line ``n`` of a file is item
    ``n - 1``; a final line break adds no empty line."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_json(text: str, where: str) -> Any:
    """The JSON value of ``text`` (one line of a file, or a whole file); invalid or too deeply
    nested JSON is a :class:`DataError` naming ``where`` (``"FILE, line N"``, or ``"FILE"`` and
    then the line when ``text`` has several) and the column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        line = f", line {error.lineno}" if "\n" in text.strip() else ""
        raise DataError(f"{where}{line}: not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: not valid JSON (nested too deeply)") from None


def parse_json_object(line: str, where: str) -> Dict[str, Any]:
    """:func:`parse_json` of one line that must hold a JSON object."""
    value = parse_json(line, where)
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value
