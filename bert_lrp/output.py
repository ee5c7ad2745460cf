"""THE writer: every file the package writes goes through this module (rules: docs/outputs.md).

Four parts, one job each, used by every command (``explain --json/--html/--jsonl``, ``evaluate``,
``tune-lrp``, ``train``, ``convert``, ``benchmark``, ``inspect``) and by the work modules below them:

- **atomic** (:func:`atomic_write`, :func:`atomic_write_many`, :func:`atomic_write_text(s)`,
  :func:`atomic_directory`, :func:`append_lines`): a temporary name in the same folder, then a
  rename; nothing half-written is left, and the folders made for it are removed on failure;
- **guard** (:class:`Guard`): an output is never an input of the run nor a file of the model
  folder, compared by real identity (``st_dev``, ``st_ino``: symlinks and hard links included),
  and never an existing file of another kind (:func:`file_kind`) without ``--overwrite``;
  a refusal is a :class:`bert_lrp.errors.RequestError` whose field is the output's name
  (``"json"``, ``"out"``), shown by the command line with its flag, exit code 2;
- **lock** (:func:`exclusive_lock`): one writer per output; a second process refuses at once
  (:class:`OutputBusyError`, exit code 1);
- **runs** (:class:`RunRecord`, :func:`check_resume`): a resumable run records the fingerprints
  of its inputs, of the weights and its settings; a run resumed with any of them changed refuses,
  naming what changed (unless the caller discards the earlier run: ``--overwrite``).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .errors import BertLrpError, InputFileError, RequestError


# ================================================================== atomic
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


def atomic_write_many(outputs: Mapping[str | os.PathLike, Callable[[str], None]]) -> None:
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
            handle.flush()
            os.fsync(handle.fileno())
    return write


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` (UTF-8) to ``path``, atomically."""
    atomic_write(path, _text_writer(text))


def atomic_write_texts(outputs: Mapping[str | os.PathLike, str]) -> None:
    """:func:`atomic_write_many` for texts (UTF-8)."""
    atomic_write_many({path: _text_writer(text) for path, text in outputs.items()})


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    """``value`` as indented JSON (one trailing newline), atomically."""
    atomic_write_text(path, json.dumps(value, indent=1, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary sibling folder; on success it replaces ``path``, on failure it is removed
    (and so are the parent folders made for it)."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    created = make_folders(parent)
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
        remove_empty_folders(created)
        raise


def write_tensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Optional[Dict[str, str]] = None) -> None:
    """``tensors`` (name -> torch tensor) as a ``.safetensors`` file, atomically."""
    from safetensors.torch import save_file

    atomic_write(path, lambda temporary: save_file(dict(tensors), temporary, metadata=metadata))


def write_torch(path: str | os.PathLike, value: Any) -> None:
    """``value`` with ``torch.save`` (a ``.bin`` of tensors), atomically."""
    import torch

    atomic_write(path, lambda temporary: torch.save(value, temporary))


def open_for_append(path: str | os.PathLike):
    """An append-mode text handle on ``path`` (UTF-8): the one door for logs and JSON-lines records
    that grow line by line (each line whole or, after an interruption, a torn last line that the
    readers of :mod:`bert_lrp._jsonl` drop)."""
    return open(path, "a", encoding="utf-8")


def open_log(path: str | os.PathLike):
    """A new progress log at ``path`` (UTF-8 text, written as the run goes so that it can be
    followed; not atomic: a log of an interrupted run shows how far it came)."""
    return open(path, "w", encoding="utf-8")


def truncate(path: str | os.PathLike, size: int = 0) -> None:
    """Cut ``path`` to ``size`` bytes (a torn last line, or an earlier run discarded)."""
    os.truncate(path, size)


# ================================================================== guard
def identity(path: str | os.PathLike) -> Optional[Tuple[int, int]]:
    """``(st_dev, st_ino)`` of the file ``path`` names (symlinks followed), None if there is none."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def file_kind(path: str | os.PathLike) -> str:
    """What an existing file holds, from its first bytes: ``empty``, ``safetensors``, ``pickle``
    (a torch ``.bin``), ``zip``, ``html`` (also XML/SVG), ``jsonl`` (JSON lines, or one JSON
    record with an integer ``index``), ``json``, ``text`` (other UTF-8) or ``binary``."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if not head:
        return "empty"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:
            return "binary"
        text = head[:error.start].decode("utf-8-sig", errors="ignore")
    stripped = text.lstrip()
    if stripped.startswith("<"):
        return "html"
    if stripped[:1] in ("{", "["):
        return _json_kind(stripped)
    return "text"


def _json_kind(text: str) -> str:
    """``json`` (one document: indented, or one line that is not a record) or ``jsonl`` (records
    one per line; a first record torn by an interruption counts)."""
    first, _, rest = text.partition("\n")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return "json" if first.strip() in ("{", "[") else "jsonl"
    if rest.strip() or (isinstance(record, dict) and isinstance(record.get("index"), int)):
        return "jsonl"
    return "json"


# the kinds an output of each kind may replace without --overwrite (besides "empty")
REPLACEABLE = {"json": {"json"}, "html": {"html"}, "jsonl": {"jsonl"}, "text": {"text"},
               "safetensors": {"safetensors"}, "pickle": {"pickle", "zip"}}


@dataclass(frozen=True)
class Protected:
    """A file the run must not write: ``what`` it is (``"the input file"``, ``"a file of the
    model folder m (config.json)"``) and its identity."""

    what: str
    path: str
    identity: Tuple[int, int]


@dataclass
class Guard:
    """The files one run must not write (its inputs, every file of its model folder) and the
    checks every output of the run passes before anything is written. Build it with
    :meth:`for_run`; check outputs with :meth:`check_file` / :meth:`check_folder`."""

    protected: List[Protected] = field(default_factory=list)
    model_dir: Optional[str] = None
    overwrite_hint: str = "pass overwrite=True"  # how the caller's user replaces a file of another kind

    @classmethod
    def for_run(cls, inputs: Iterable[Tuple[str, Optional[str | os.PathLike]]] = (),
                model_dir: Optional[str | os.PathLike] = None) -> "Guard":
        """``inputs``: ``(what, path)`` pairs (``("the input file", "in.txt")``; a None path is
        skipped); ``model_dir``: the model folder, whose model files (config, weights, tokenizer
        files, ``lrp_composite.json``...: :data:`MODEL_FILE_PATTERNS`, top level and one level
        below) are protected."""
        guard = cls(model_dir=os.fspath(model_dir) if model_dir is not None else None)
        for what, path in inputs:
            if path is not None:
                guard.protect(what, path)
        if model_dir is not None and os.path.isdir(model_dir):
            for path in _files_of(os.fspath(model_dir)):
                guard.protect(f"a file of the model folder {os.fspath(model_dir)}", path)
        return guard

    def protect(self, what: str, path: str | os.PathLike) -> None:
        """Protect ``path`` (a file that does not exist protects nothing)."""
        found = identity(path)
        if found is not None and os.path.isfile(path):
            self.protected.append(Protected(what, os.fspath(path), found))

    def allow(self, path: str | os.PathLike) -> None:
        """Stop protecting ``path`` (a file of the model folder the command is meant to write:
        ``tune-lrp``'s ``lrp_composite.json``)."""
        found = identity(path)
        self.protected = [p for p in self.protected if p.identity != found]

    def clash(self, path: str | os.PathLike) -> Optional[Protected]:
        """The protected file ``path`` is (by identity), if any."""
        found = identity(path)
        return next((p for p in self.protected if p.identity == found), None) if found else None

    def check_file(self, field_name: str, path: str | os.PathLike, kind: Optional[str] = None,
                   overwrite: bool = False) -> None:
        """Refuse (:class:`RequestError` on ``field_name``) an output file ``path`` that is a
        folder, a protected file, or an existing file of another ``kind`` (unless ``overwrite``)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise RequestError(field_name, f"{path}: is a folder, expected a file name")
        hit = self.clash(path)
        if hit is not None:
            raise RequestError(field_name, _clash_message(path, hit))
        if kind is not None and not overwrite and os.path.isfile(path):
            found = file_kind(path)
            if found != "empty" and found not in REPLACEABLE.get(kind, {kind}):
                raise RequestError(field_name, f"{path}: exists and holds {found}, not {kind}; it is left as it is "
                                               f"(choose another file, or {self.overwrite_hint} to replace it)")

    def check_folder(self, field_name: str, folder: str | os.PathLike, replaced: bool = False) -> None:
        """Refuse an output folder that is a file or the model folder; ``replaced`` (the whole
        folder is replaced): also one that holds the model folder or a protected file."""
        folder = os.fspath(folder)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise RequestError(field_name, f"{folder}: is a file, expected a folder")
        if not os.path.isdir(folder):
            return
        real = os.path.realpath(folder)
        model = os.path.realpath(self.model_dir) if self.model_dir is not None and os.path.isdir(self.model_dir) \
            else None
        if model is not None and (model == real or (replaced and _inside(model, real))):
            raise RequestError(field_name, f"{folder}: is the model folder {self.model_dir} or holds it; writing "
                                           "there would replace the model: choose another folder")
        if replaced:
            for protected in self.protected:
                if _inside(os.path.realpath(protected.path), real):
                    raise RequestError(field_name, f"{folder}: holds {protected.path} ({protected.what} of this run), "
                                                   "which replacing the folder would delete: choose another folder")

    def check_files_in(self, field_name: str, folder: str | os.PathLike, names: Iterable[str]) -> None:
        """:meth:`check_folder`, then :meth:`check_file` for each file ``names`` this run writes in it."""
        self.check_folder(field_name, folder)
        for name in names:
            path = os.path.join(os.fspath(folder), name)
            hit = self.clash(path)
            if hit is not None:
                raise RequestError(field_name, _clash_message(path, hit))


def _clash_message(path: str, hit: Protected) -> str:
    same = "" if os.path.abspath(hit.path) == os.path.abspath(path) else f" {hit.path}"
    return f"{path}: is {hit.what}{same} of this run; it is left as it is: choose another file"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


# the files that make a model folder (what Guard protects there; a run's own outputs placed in the
# folder, e.g. an --jsonl file, are not among them and may be resumed)
MODEL_FILE_PATTERNS = ("config.json", "bert_config.json", "generation_config.json", "*.safetensors", "*.bin", "*.pt",
                       "*.pth", "*.ckpt*", "*.index", "*.h5", "vocab.txt", "vocab.json", "merges.txt", "*.model",
                       "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                       "lrp_composite.json", "checkpoint")


def _files_of(folder: str) -> List[str]:
    """The model files (:data:`MODEL_FILE_PATTERNS`) of ``folder`` and of its sub-folders one level down."""
    import fnmatch

    found = []
    for entry in os.scandir(folder):
        entries = [entry] if entry.is_file() else \
            list(os.scandir(entry.path)) if entry.is_dir() and not entry.name.startswith(".") else []
        found += [e.path for e in entries
                  if e.is_file() and any(fnmatch.fnmatch(e.name, pattern) for pattern in MODEL_FILE_PATTERNS)]
    return found


# ================================================================== lock
class OutputBusyError(BertLrpError):
    """Another process holds the lock of an output (exit code 1)."""


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of an output file or folder: ``OUTPUT.lock`` beside it."""
    output = Path(os.path.abspath(os.fspath(output)))
    return output.with_name(output.name + ".lock")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, slot: int = 0) -> Iterator[None]:
    """Hold an exclusive lock on byte ``slot`` of the lock file ``path`` for the ``with`` block,
    or raise :class:`OutputBusyError` at once if another process holds it. ``slot``: one per
    writer of a ``torchrun`` job (rank), so that the ranks of one job do not exclude each other.

    The file is created for the block and removed after it by slot 0 (while still locked). The
    operating system releases the lock when the process ends, however it ends (``kill -9``
    included), so a lock is never stale; a lock won on a file that another process has removed
    meanwhile does not count (the path is checked to still name the locked file)."""
    import fcntl

    path = Path(path)
    handle = open(path, "a+b")
    try:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
            if not path.exists() or os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino:
                raise BlockingIOError(errno.EAGAIN, "the lock file was replaced")
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EAGAIN):
                raise OutputBusyError(f"{path}: another bert-lrp process is writing this output "
                                      "(its lock is held); wait for it or choose another output") from None
            raise
        try:
            yield
        finally:
            if slot == 0:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    finally:
        handle.close()  # releases the lock


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, slot: int = 0) -> Iterator[None]:
    """:func:`exclusive_lock` on :func:`lock_path` of ``output`` (its parent folder is made for it
    and removed again if it is still empty afterwards)."""
    path = lock_path(output)
    created = make_folders(path.parent)
    try:
        with exclusive_lock(path, slot):
            yield
    finally:
        remove_empty_folders(created)


@contextlib.contextmanager
def output_locks(outputs: Iterable[Optional[str | os.PathLike]]) -> Iterator[None]:
    """:func:`output_lock` on each given output (None: skipped) for the ``with`` block."""
    with contextlib.ExitStack() as stack:
        for output in outputs:
            if output is not None:
                stack.enter_context(output_lock(output))
        yield


# ================================================================== runs
def file_fingerprint(path: str | os.PathLike) -> str:
    """The first 16 hex digits of the SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class RunRecord:
    """What a resumable run records before its first result: the fingerprints of its ``inputs``
    (name -> fingerprint), of the ``weights`` and its ``settings`` (a JSON object). A run resumes
    only an earlier run with the same record (:func:`check_resume`)."""

    inputs: Dict[str, Any]
    weights: Optional[str]
    settings: Dict[str, Any]

    def to_json(self) -> Dict[str, Any]:
        return {"inputs": self.inputs, "weights": self.weights, "settings": self.settings}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "RunRecord":
        return cls(dict(value.get("inputs") or {}), value.get("weights"), dict(value.get("settings") or {}))


def read_run(path: str | os.PathLike, damaged_hint: str = "choose another output") -> Optional[Dict[str, Any]]:
    """The JSON object in the run file ``path``, None if there is none; a damaged one is an
    :class:`InputFileError` naming the file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(f"{path}: damaged run file of an earlier run ({type(error).__name__}); "
                             f"{damaged_hint}") from None
    if not isinstance(value, dict):
        raise InputFileError(f"{path}: not a run file (a JSON object expected, found {type(value).__name__}); "
                             f"{damaged_hint}")
    return value


def write_run(path: str | os.PathLike, value: Mapping[str, Any]) -> None:
    """The run file, atomically (before the first result of the run)."""
    atomic_write_text(path, json.dumps(dict(value), indent=1, ensure_ascii=False) + "\n")


def differences(earlier: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "",
                ignore: Sequence[str] = ()) -> List[str]:
    """What differs, as ``name (earlier -> now)``, nested names joined by dots; ``ignore``: names
    recorded but not compared."""
    found = []
    for key in sorted(set(earlier) | set(now), key=str):
        name = f"{prefix}{key}"
        before, after = earlier.get(key), now.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            found += differences(before, after, name + ".", ignore)
        elif before != after and name not in ignore:
            found.append(f"{name} ({_short(before)} -> {_short(after)})")
    return found


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:40] + "..." + text[-12:]


def check_resume(field_name: str, output: str | os.PathLike, run_file: str | os.PathLike, now: Mapping[str, Any],
                 overwrite: bool, ignore: Sequence[str] = (),
                 advice: str = "pass overwrite=True to discard it, or choose another output"
                 ) -> Optional[Dict[str, Any]]:
    """The earlier run recorded in ``run_file`` (of the ``output`` given as ``field_name``) if it
    equals ``now`` (the run may resume it); None if there is none, or ``overwrite`` discards it
    (then the caller starts afresh). An earlier run with other inputs, weights or settings is a
    :class:`RequestError` on ``field_name`` naming every difference."""
    try:
        earlier = read_run(run_file, advice)
    except InputFileError:
        if overwrite:
            return None
        raise
    if earlier is None:
        return None
    changed = differences(earlier, dict(now), ignore=ignore)
    if not changed:
        return earlier
    if overwrite:
        return None
    raise RequestError(field_name, f"{os.fspath(output)}: holds a run with other "
                                   f"{', '.join(changed)} ({run_file}); {advice}")
