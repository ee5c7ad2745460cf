"""File output for the commands: atomic output (temporary name in the same folder, then rename;
nothing half-written or empty is left on failure). Input files are read by :mod:`bert_lrp.data`."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable, Dict, Iterator, List


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_folders(folder: str | os.PathLike) -> List[str]:
    """``os.makedirs(folder, exist_ok=True)``; returns the folders it created, outermost first,
    so that :func:`remove_empty_folders` can undo it after a failure."""
    folder = os.path.abspath(os.fspath(folder))
    missing: List[str] = []
    current = folder
    while not os.path.exists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    os.makedirs(folder, exist_ok=True)
    return missing[::-1]


def remove_empty_folders(created: List[str]) -> None:
    """Remove the folders :func:`make_folders` created, innermost first, as long as they are empty."""
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or gone): leave it and its parents
            return


def _check_target(path: str) -> None:
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a folder, expected a file name", path)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` and move the result to ``path`` only if it succeeded; folders
    created for it are removed again on failure."""
    atomic_write_many({path: write})


def atomic_write_many(outputs: Dict[str | os.PathLike, Callable[[str], None]]) -> None:
    """Write several files all-or-nothing as far as the file system allows: every ``write(temporary)``
    runs first; only when all succeeded are the temporaries renamed onto their paths. On failure
    the temporaries and the folders created for them are removed and no target is touched."""
    created: List[str] = []
    temporaries: Dict[str, str] = {}
    try:
        for path, write in outputs.items():
            path = os.fspath(path)
            _check_target(path)
            folder = os.path.dirname(os.path.abspath(path))
            created += make_folders(folder)
            handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                                 dir=folder)
            os.close(handle)
            temporaries[path] = temporary
            write(temporary)
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        for path in list(temporaries):
            os.replace(temporaries.pop(path), path)
    except BaseException:
        for temporary in temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
        remove_empty_folders(created)
        raise


def _text_writer(text: str) -> Callable[[str], None]:
    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
    return write


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, _text_writer(text))


def atomic_write_texts(outputs: Dict[str | os.PathLike, str]) -> None:
    """:func:`atomic_write_many` for texts (UTF-8)."""
    atomic_write_many({path: _text_writer(text) for path, text in outputs.items()})


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary sibling folder; on success it replaces ``path``, on failure it is removed."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())
        if os.path.isdir(path):
            backup = temporary + ".old"
            os.replace(path, backup)
            os.replace(temporary, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
