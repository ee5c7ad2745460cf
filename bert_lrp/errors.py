"""Errors the command line reports as one line, and the boundary that reports them.

Every ``bert-lrp`` command runs through :func:`run_command`: a project error, an ``OSError`` or a
``UnicodeDecodeError`` becomes ONE line on stderr, ``bert-lrp COMMAND: error: MESSAGE``, and an
exit code (2: the command line is wrong, e.g. a bad option value, a missing input, a path that
does not exist; 1: the command failed, e.g. a file that exists but cannot be used). ``--debug``
(``bert-lrp --debug COMMAND ...``) or ``BERT_LRP_DEBUG=1`` re-raises instead, with the traceback.
Ctrl-C ends with exit code 130 and one line.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from ._text import printable

USAGE = 2
FAILURE = 1
INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`; quiet, as Unix tools are
MAX_MESSAGE = 1000  # characters of one error line


class BertLrpError(Exception):
    """Base of the errors the command line reports without a traceback. ``exit_code`` is 1
    (the command failed) unless a subclass says otherwise."""

    exit_code = FAILURE


class UsageError(BertLrpError):
    """The command line is wrong: a bad option value, a missing input, a path that does not exist."""

    exit_code = USAGE


class RequestError(UsageError, ValueError):
    """A request (of the Python API, a command or the explorer) is wrong in one ``field``: the
    dotted name of what was given, as the library knows it (``"stride"``, ``"methods"``,
    ``"options.ig_steps"``, ``"out"``), never a command-line flag. The command line shows the field
    as its flag (``--stride``), the explorer as its JSON field; ``str(error)`` is
    ``"FIELD: MESSAGE"`` for Python users."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class InputFileError(BertLrpError):
    """A file given on the command line exists but cannot be used (not UTF-8, not the expected kind)."""


# ------------------------------------------------------------------ messages
def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` as one printable line: line breaks become ``"; "``, control characters and bidi
    overrides are shown as escapes (see :mod:`bert_lrp._text`), long texts are cut."""

    parts = [part.strip() for part in str(message).splitlines()]
    text = printable("; ".join(part for part in parts if part))
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text or "(no message)"


def os_error_message(error: OSError) -> str:
    """``FILE: what is wrong`` for an OSError (FileNotFoundError, IsADirectoryError, PermissionError...)."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.filename is not None and error.filename2 is not None:
        return f"{os.fsdecode(error.filename)} -> {os.fsdecode(error.filename2)}: {reason}"
    if error.filename is not None:
        return f"{os.fsdecode(error.filename)}: {reason}"
    return reason


def unicode_message(error: UnicodeDecodeError, source: str = "the input", locate: bool = True) -> str:
    """``SOURCE, line N: not valid UTF-8 (byte 0xff at column C)``. ``locate``: ``error.object`` is
    the whole file, so that line and column can be counted (not so for a chunk of a stream)."""
    data = error.object if isinstance(error.object, (bytes, bytearray)) else b""
    bad = data[error.start:error.start + 1]
    where = ""
    if data and locate:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        where = f", line {line}"
        detail = f"byte 0x{bad.hex()} at column {column}" if bad else error.reason
    else:
        detail = f"byte 0x{bad.hex()}" if bad else error.reason
    return f"{source}{where}: not valid UTF-8 ({detail})"


def describe(error: BaseException) -> Tuple[str, int]:
    """The one-line message and exit code for ``error``."""
    if isinstance(error, BertLrpError):
        return one_line(str(error)), error.exit_code
    if isinstance(error, BertLrpError):
        return one_line(str(error)), FAILURE
    if isinstance(error, UnicodeDecodeError):
        return one_line(unicode_message(error, locate=False)), FAILURE
    if isinstance(error, OSError):
        return one_line(os_error_message(error)), FAILURE
    if isinstance(error, MemoryError):
        return "out of memory (try a smaller --batch-size or fewer texts)", FAILURE
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return one_line(f"unexpected {detail} (run again with --debug for the traceback; if the input is "
                    "right, please report it)"), FAILURE


def debug_requested(argv: Sequence[str] = ()) -> bool:
    return os.environ.get("BERT_LRP_DEBUG", "").strip().lower() not in ("", "0", "no", "false") or \
        "--debug" in argv


def report(command: str, message: str, stream=None) -> None:
    stream = sys.stderr if stream is None else stream
    print(f"{command}: error: {message}", file=stream)


def run_command(command: str, function: Callable[[List[str]], Optional[int]], argv: List[str],
                debug: bool = False, show_request: Optional[Callable[[RequestError], str]] = None) -> int:
    """Run ``function(argv)`` (a sub-command's ``main``) and turn every error into one line on stderr
    and an exit code; ``debug`` re-raises. ``command`` is the prefix of messages, e.g.
    ``bert-lrp explain``; ``show_request`` words a :class:`RequestError` for this command (its
    field shown as the command's flag: :func:`bert_lrp.cli.request_line`)."""
    try:
        result = function(argv)
        _flush_stdout()
        return int(result or 0)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error already printed (2)
        if exit_.code is None or isinstance(exit_.code, int):
            return int(exit_.code or 0)
        report(command, one_line(str(exit_.code)))
        return FAILURE
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # e.g. `bert-lrp explain ... | head`: the reader went away, not an error
        _silence_stdout()
        return BROKEN_PIPE
    except Exception as error:  # noqa: BLE001  (the one place that turns errors into messages)
        if debug:
            raise
        message, code = describe(error)
        if show_request is not None and isinstance(error, RequestError):
            message = one_line(show_request(error))
        report(command, message)
        return code


def _flush_stdout() -> None:
    if sys.stdout is not None:
        sys.stdout.flush()


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the exit flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
