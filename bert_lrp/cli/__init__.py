"""``bert-lrp`` command line: each sub-command's front-end (parser and ``main``) lives in its own
module of this package and is imported on demand; the work it calls lives below (``evaluation``,
``training``, ``tf``, ``inspection``, ``attribution``, ``models``; see docs/architecture.md).

This is the one error boundary of the command line (:func:`bert_lrp.errors.run_command`): a
command's own errors (CheckpointError, ConfigError, DataError, InputError, TokenizerError,
TFCheckpointError, UsageError, ...), ``OSError`` and ``UnicodeDecodeError`` become one line on
stderr, ``bert-lrp COMMAND: error: MESSAGE``, with exit code 2 for a wrong command line (bad
option value, missing input, a path that does not exist) and 1 for a failure; never a traceback.
``bert-lrp --debug COMMAND ...`` or ``BERT_LRP_DEBUG=1`` shows the traceback instead. Ctrl-C
exits with 130.
"""
from __future__ import annotations

import importlib
import sys
from typing import List, Optional

from ..errors import USAGE, debug_requested, run_command

COMMANDS = {
    "explain": ("bert_lrp.cli.explain", "main", "explain a prediction (terminal, HTML, JSON)"),
    "evaluate": ("bert_lrp.cli.evaluate", "main", "faithfulness of attribution methods on a data set"),
    "tune-lrp": ("bert_lrp.cli.tune", "main", "search the LRP rules for the model's most faithful composite"),
    "train": ("bert_lrp.cli.train", "train_main", "fine-tune a classifier or a token classifier"),
    "benchmark": ("bert_lrp.cli.benchmark", "main", "attribution speed and memory"),
    "convert": ("bert_lrp.cli.convert", "convert_main", "convert a TensorFlow BERT checkpoint (no TensorFlow needed)"),
    "inspect-checkpoint": ("bert_lrp.cli.convert", "inspect_main", "list the tensors of a TensorFlow checkpoint"),
    "inspect": ("bert_lrp.cli.inspect", "main", "look inside: masked word per layer, embeddings across layers"),
    "serve": ("bert_lrp.cli.serve", "main", "the explorer: a local web page to explain, compare and browse"),
}

GLOBAL_OPTIONS = """global options (before COMMAND):
  -h, --help           show this help and exit
  --version            show the version and exit
  --debug              show the traceback of an error instead of one line (also: BERT_LRP_DEBUG=1)"""


def usage() -> str:
    lines = ["usage: bert-lrp [--debug] COMMAND [options]   (bert-lrp COMMAND --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<20} {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    lines += ["", GLOBAL_OPTIONS, "",
              "Errors are one line on stderr; exit code 0: success, 1: failure, 2: bad command line, "
              "130: interrupted, 141: the reader of the output went away (a broken pipe)."]
    return "\n".join(lines)


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested()
    for number, argument in enumerate(argv, 1):  # bytes that are not UTF-8 reach Python as lone surrogates
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError as error:
            byte = ord(argument[error.start]) - 0xDC00 if 0xDC80 <= ord(argument[error.start]) <= 0xDCFF else None
            what = f"byte 0x{byte:02x}" if byte is not None else "a lone surrogate"
            print(f"bert-lrp: error: command-line argument {number} is not valid UTF-8 ({what} at character "
                  f"{error.start + 1}); pass texts in UTF-8, or with --file", file=sys.stderr)
            return USAGE
    while argv and argv[0].startswith("-"):  # global options come before the command
        option = argv.pop(0)
        if option == "--debug":
            debug = True
        elif option in ("-h", "--help"):
            print(usage())
            return 0
        elif option == "--version":
            print(f"bert-lrp {_version()}")
            return 0
        else:
            print(f"bert-lrp: error: unknown option {option} (options of a command go after it: "
                  f"bert-lrp COMMAND {option})\n\n{usage()}", file=sys.stderr)
            return USAGE
    if not argv:
        print(f"bert-lrp: error: no command given\n\n{usage()}", file=sys.stderr)
        return USAGE
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"bert-lrp: error: unknown command {name!r}{hint}\n\n{usage()}", file=sys.stderr)
        return USAGE
    module_name, function_name, _ = COMMANDS[name]

    def command(arguments: List[str]) -> Optional[int]:
        function = getattr(importlib.import_module(module_name), function_name)
        return function(arguments)

    return run_command(f"bert-lrp {name}", command, rest, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
