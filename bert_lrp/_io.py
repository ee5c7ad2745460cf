"""File input for the commands: strict UTF-8 input whose errors name the file and line. (The
write half, atomic output, is :mod:`bert_lrp.output`, the one writer.)"""
from __future__ import annotations

import os
from typing import Optional

# the write half lives in the one writer, bert_lrp.output (re-exported here for the callers outside it)
from .output import (atomic_directory, atomic_write, atomic_write_many, atomic_write_text,  # noqa: F401
                     atomic_write_texts, make_folders, remove_empty_folders)


# ------------------------------------------------------------------ input
def decode_utf8(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8 (a leading byte order mark is dropped); invalid bytes raise
    :class:`bert_lrp.errors.InputFileError` naming ``source``, the line and the byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        from .errors import InputFileError, unicode_message

        raise InputFileError(unicode_message(error, source)) from None


def read_text_file(path: str | os.PathLike, option: Optional[str] = None) -> str:
    """The text of ``path``, strictly UTF-8. A path that does not exist or is a folder is a
    :class:`bert_lrp.errors.UsageError` (naming ``option``, e.g. ``--file``, when given); invalid
    UTF-8 an :class:`bert_lrp.errors.InputFileError` naming file and line."""
    from .errors import UsageError

    path = os.fspath(path)
    label = f"{option} {path}" if option else path
    if os.path.isdir(path):
        raise UsageError(f"{label}: is a folder, expected a text file")
    if not os.path.exists(path):
        raise UsageError(f"{label}: no such file")
    with open(path, "rb") as handle:
        data = handle.read()
    return decode_utf8(data, path)
