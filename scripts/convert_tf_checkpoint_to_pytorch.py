#!/usr/bin/env python3
"""Convert a Google BERT TensorFlow checkpoint to PyTorch, with the original research code's flags.

    python scripts/convert_tf_checkpoint_to_pytorch.py \\
        --tf_checkpoint_path uncased_L-12_H-768_A-12/bert_model.ckpt \\
        --bert_config_file uncased_L-12_H-768_A-12/bert_config.json \\
        --pytorch_dump_path out/

A dump path ending in ``.safetensors`` (preferred) or ``.bin`` receives only the weights;
any other path is treated as an output folder (config.json, model.safetensors, vocab.txt).
TensorFlow is not needed.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import List, Optional

try:
    import bert_lrp  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bert_lrp.models.config import ConfigError
from bert_lrp.tf.convert import HEADS, convert_tf_checkpoint, convert_tf_to_model, save_weights_file
from bert_lrp.tf.bundle import TFCheckpointError


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tf_checkpoint_path", required=True, help="TF checkpoint prefix (e.g. bert_model.ckpt)")
    parser.add_argument("--bert_config_file", required=True, help="Google's bert_config.json")
    parser.add_argument("--pytorch_dump_path", required=True,
                        help="output folder, or a .safetensors/.bin file for the weights only")
    parser.add_argument("--vocab_file", help="vocab.txt to copy into the output folder")
    parser.add_argument("--head", choices=HEADS, default="auto", help="model head (default: from the checkpoint)")
    parser.add_argument("--accept-damaged-skipped", "--accept_damaged_skipped", dest="accept_damaged_skipped",
                        action="store_true",
                        help="convert even if tensors that are not converted (optimizer slots, global_step) are "
                             "damaged; they are named in a warning")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    dump = args.pytorch_dump_path
    try:
        if dump.endswith((".safetensors", ".bin")):
            model, report = convert_tf_to_model(args.tf_checkpoint_path, args.bert_config_file, args.head,
                                                args.accept_damaged_skipped)
            save_weights_file(model, dump)
            print(f"wrote {type(model).__name__} weights ({len(report.loaded)} tensors) to {dump}")
        else:
            convert_tf_checkpoint(args.tf_checkpoint_path, args.bert_config_file, dump,
                                  vocab_path=args.vocab_file, head=args.head,
                                  accept_damaged_skipped=args.accept_damaged_skipped)
            print(f"wrote {dump}")
    except (TFCheckpointError, ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())
