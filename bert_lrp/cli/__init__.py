"""``bert-lrp`` command line: each sub-command's front-end (parser and ``main``) lives in its own
module of this package and is imported on demand; the work it calls lives below (``evaluation``,
``training``, ``tf``, ``inspection``, ``attribution``, ``models``; see docs/architecture.md).

This is the one error boundary of the command line (:func:`bert_lrp.errors.run_command`): a
command's own errors (CheckpointError, ConfigError, DataError, InputError, TokenizerError,
TFCheckpointError, UsageError, ...), ``OSError`` and ``UnicodeDecodeError`` become one line on
stderr, ``bert-lrp COMMAND: error: MESSAGE``, with exit code 2 for a wrong command line (bad
option value, missing input, a path that does not exist) and 1 for a failure; never a traceback.
``bert-lrp --debug COMMAND ...`` or ``BERT_LRP_DEBUG=1`` shows the traceback instead. Ctrl-C
exits with 130. A :class:`bert_lrp.errors.RequestError` raised anywhere below names its field as
the library knows it (``"json"``, ``"out"``, ``"options.ig_steps"``); the line shows the command's
flag for it (:func:`request_line`: ``--json in.txt: is the input file (--file) of this run``).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Iterator, List, Optional

from ..errors import USAGE, RequestError, debug_requested, run_command

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

# the function that builds a command's argparse parser, where it is not ``build_parser``
PARSERS = {"convert": "build_convert_parser", "inspect-checkpoint": "build_inspect_parser"}

GLOBAL_OPTIONS = """global options (before COMMAND):
  -h, --help           show this help and exit
  --version            show the version and exit
  --debug              show the traceback of an error instead of one line (also: BERT_LRP_DEBUG=1)"""


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every action of ``parser`` and of its sub-commands' parsers."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)


def flag_of(parser: argparse.ArgumentParser, field: str) -> Optional[str]:
    """The command-line flag of a request ``field``: the option whose argparse ``dest`` is the
    field (``"json"`` -> ``--json``, ``"batch_size"`` -> ``--batch-size``); for a method option
    ``"options.NAME"``, the option of that dest or else the registry option's flag; None if the
    command has no such option (the field is then shown as it is)."""
    dest = field.split(".", 1)[1] if field.startswith("options.") else field
    for action in _actions(parser):
        if action.dest == dest and action.option_strings:
            return max(action.option_strings, key=len)
    if field.startswith("options."):
        from ..attribution import registry

        option = registry.all_options().get(dest)
        return option.flag if option is not None else None
    return None


def request_line(parser: argparse.ArgumentParser, error: RequestError,
                 given: Optional[argparse.Namespace] = None) -> str:
    """``error`` as the command line shows it: its field as the flag, followed by the message;
    directly when the message starts with the value given (as it is or quoted: ``--json in.txt:
    is the input file``, ``--word 'paris' is not a word``), else after a colon (``--stride: must
    be positive``). ``given``: the parsed command line (its values; an option given several times,
    such as ``serve --model``, has a list: any of them)."""
    flag = flag_of(parser, error.field)
    if flag is None:
        return str(error)
    value = getattr(given, error.field.split(".")[-1], None) if given is not None else None
    values = value if isinstance(value, list) else [value]
    texts = tuple(str(v) for v in values if v is not None and not isinstance(v, bool) and str(v))
    if texts and error.message.startswith(texts + tuple(repr(text) for text in texts)):
        return f"{flag} {error.message}"
    return f"{flag}: {error.message}"


def request_describer(parser: argparse.ArgumentParser, given: argparse.Namespace):
    """A function wording an error of one input as the command's error line would: a request
    error with its field as the flag (:func:`request_line`), a usage error as it is, any other
    with its type (``explain --jsonl``'s records)."""
    from ..errors import UsageError

    def describe(error: BaseException) -> str:
        if isinstance(error, RequestError):
            return request_line(parser, error, given)
        return str(error) if isinstance(error, UsageError) else f"{type(error).__name__}: {error}"
    return describe


def parsed_or_none(parser: argparse.ArgumentParser, argv: List[str]) -> Optional[argparse.Namespace]:
    """``argv`` parsed by ``parser`` (unknown arguments ignored), None if it does not parse."""
    try:
        return parser.parse_known_args(argv)[0]
    except Exception:  # noqa: BLE001  (a command line the command itself already accepted)
        return None


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

    def show_request(error: RequestError) -> str:
        try:
            parser = getattr(importlib.import_module(module_name), PARSERS.get(name, "build_parser"))()
        except Exception:  # noqa: BLE001  (no parser to read the flag from: the field as it is)
            return str(error)
        return request_line(parser, error, parsed_or_none(parser, rest))

    return run_command(f"bert-lrp {name}", command, rest, debug=debug, show_request=show_request)


if __name__ == "__main__":
    sys.exit(main())
