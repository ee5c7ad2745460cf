"""``bert-lrp`` command line: each sub-command lives in its own module and is imported on demand."""
from __future__ import annotations

import importlib
import sys
from typing import List, Optional

COMMANDS = {
    "explain": ("bert_lrp.explain_cli", "main", "explain a prediction (terminal, HTML, JSON)"),
    "evaluate": ("bert_lrp.faithfulness", "evaluate_main", "faithfulness of attribution methods on a data set"),
    "train": ("bert_lrp.training", "train_main", "fine-tune a classifier or a token classifier"),
    "benchmark": ("bert_lrp.benchmark", "main", "attribution speed and memory"),
    "convert": ("bert_lrp.convert_tf", "convert_main", "convert a TensorFlow BERT checkpoint (no TensorFlow needed)"),
    "inspect-checkpoint": ("bert_lrp.convert_tf", "inspect_main", "list the tensors of a TensorFlow checkpoint"),
}


def usage() -> str:
    lines = ["usage: bert-lrp COMMAND [options]   (bert-lrp COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<20} {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"bert-lrp: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = COMMANDS[name]
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
