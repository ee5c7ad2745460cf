"""What every command's parser shares: the parser itself (:class:`ArgumentParser`), argument
types, and the methods' options as flags.

The flags of the attribution methods are generated from the registry
(:mod:`bert_lrp.attribution.registry`): each :class:`~bert_lrp.attribution.registry.Option` becomes
``--name-with-dashes`` with its kind, default, range and help, once however many methods share
it. A method registered in one module is thus on every command line that explains.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Iterable, Optional

from ..attribution import registry
from ..errors import RequestError, UsageError
from ..output import Guard


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (unknown option, bad value, missing required option) are a
    :class:`~bert_lrp.errors.UsageError`, reported as one line by
    :func:`bert_lrp.errors.run_command`, instead of the usage text."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def data_command_parser(prog: str, description: str, epilog: str, data_metavar: str, data_help: str) -> ArgumentParser:
    """The parser of a command that reads a model and a data file (``evaluate``, ``tune-lrp``):
    ``--model`` and the required ``--data``."""
    from ..models.loading import DEFAULT_MODEL

    parser = ArgumentParser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("--model", metavar="DIR", help=f"model folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--data", required=True, metavar=data_metavar, help=data_help)
    return parser


def parse_command_line(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """``parser.parse_args(argv)``; a given ``--threads`` sets torch's threads at once."""
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return args


def add_switches(parser, switches: Iterable[tuple]) -> None:
    """``store_true`` options from ``(flag, help)`` pairs."""
    for flag, help_text in switches:
        parser.add_argument(flag, action="store_true", help=help_text)


def add_page_outputs(parser, json_help: str) -> None:
    """``--json FILE``, ``--html FILE``, ``--quiet`` and ``--overwrite``: the outputs of a command
    that draws a page (``inspect``'s sub-commands)."""
    parser.add_argument("--json", metavar="FILE", help=json_help)
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML page here")
    add_switches(parser, (("--quiet", "no terminal output"),))
    add_overwrite(parser, "an existing --json/--html file of another kind")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seed_number(text: str) -> int:
    """argparse type: a seed, checked as the methods' ``seed`` option (0..2**31-1, what every
    random generator here accepts)."""
    return _option_type(registry.all_options()["seed"])(text)


def _option_type(option: registry.Option):
    def parse(text: str) -> Any:
        try:
            return option.check(text)
        except registry.OptionError as error:
            raise argparse.ArgumentTypeError(str(error).split(": ", 1)[-1]) from None
    parse.__name__ = option.kind.__name__  # argparse names the type in its messages
    return parse


def add_method_options(parser: argparse.ArgumentParser, defaults: Optional[Dict[str, Any]] = None,
                       title: str = "method options (from the method registry)",
                       skip: Iterable[str] = ()) -> argparse._ArgumentGroup:
    """One flag per registered method option (``defaults`` overrides an option's default for this
    command; ``skip``: options the command declares itself). Values land in ``args.<name>``."""
    defaults = defaults or {}
    group = parser.add_argument_group(title)
    for option in registry.all_options().values():
        if option.name in skip:
            continue
        users = ", ".join(m.name for m in registry.all_methods() if option in m.options)
        default = defaults.get(option.name, option.default)
        kwargs: Dict[str, Any] = {"dest": option.name, "default": default,
                                  "help": f"{option.help} ({users}; default {default})"}
        if option.kind is bool:
            group.add_argument(option.flag, action="store_true", **kwargs)
            continue
        if option.choices:
            kwargs["choices"] = option.choices
        group.add_argument(option.flag, type=_option_type(option), metavar=option.kind.__name__.upper()
                           if not option.choices else None, **kwargs)
    return group


def method_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The method options of a parsed command line (see :func:`add_method_options`), by name."""
    return {name: getattr(args, name) for name in registry.all_options() if hasattr(args, name)}


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace ``what`` (an existing output of another kind, an earlier run)."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} (docs/outputs.md)")


def output_guard(args: argparse.Namespace, model_dir=None) -> Guard:
    """The :class:`~bert_lrp.output.Guard` of a run: the files it reads (``--file``, ``--data``,
    ``--eval-data``, ``--config``, ``--vocab``, ... when the command has them) and the model folder."""
    inputs = [(f"the input file (--{dest.replace('_', '-')})", getattr(args, dest, None)) for dest in INPUT_DESTS]
    guard = Guard.for_run([(what, path) for what, path in inputs if isinstance(path, str)], model_dir)
    guard.overwrite_hint = "add --overwrite"
    return guard


# what a command line says to discard an earlier run with other inputs, weights or settings
DISCARD_ADVICE = "use --overwrite to discard it, or another output"


# the argparse dests of the commands' input files
INPUT_DESTS = ("file", "data", "eval_data", "train_file", "eval_file", "test_file", "text", "dataset", "config",
               "vocab", "tf_checkpoint")
# the file outputs of explain/inspect and the kind each writes
FILE_OUTPUTS = (("html", "html"), ("json", "json"))


def check_outputs(args: argparse.Namespace, guard: Optional[Guard] = None) -> None:
    """Refuse ``--html``/``--json`` paths that cannot be written or must not be (an input of the
    run, a file of the model folder, an existing file of another kind without ``--overwrite``),
    before any work is done."""
    guard = guard or Guard()
    given = [(dest, kind, getattr(args, dest)) for dest, kind in FILE_OUTPUTS if getattr(args, dest, None)]
    for dest, kind, path in given:
        guard.check_file(dest, path, kind, overwrite=getattr(args, "overwrite", False))
        parent = os.path.dirname(os.path.abspath(path))
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
        if parent and not os.path.isdir(parent):
            raise RequestError(dest, f"{path}: {parent} is a file, not a folder")
    if len(given) == 2 and os.path.abspath(given[0][2]) == os.path.abspath(given[1][2]):
        raise UsageError(f"--html and --json name the same file {args.html}")
