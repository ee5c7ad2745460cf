#!/usr/bin/env python
"""BERT-LRP's ``run_classifier.py`` flags mapped onto ``bert_lrp.training.trainer``.

    python scripts/run_classifier.py --task_name sst2 --data_dir ../shared/data/sst2 \\
        --vocab_file MODEL/vocab.txt --bert_config_file MODEL/config.json \\
        --init_checkpoint MODEL/model.safetensors --do_lower_case --max_seq_length 64 \\
        --train_batch_size 32 --learning_rate 5e-5 --num_train_epochs 1 --output_dir runs/sst2

``--data_dir`` holds ``train.tsv`` and ``dev.tsv`` (and ``test.tsv`` for ``--eval_test``) with a
header ``sentence<TAB>label``. ``--init_checkpoint`` is a weights file (``.safetensors``, ``.bin``,
``.pt``; read with ``--bert_config_file``) or a Hugging Face folder. TensorFlow checkpoints:
convert them first with ``bert-lrp convert``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import List, Optional

from bert_lrp import BertConfig, BertForSequenceClassification, BertTokenizer
from bert_lrp.models.checkpoint import CheckpointError
from bert_lrp.models.config import ConfigError
from bert_lrp.training.data import DataError
from bert_lrp.models.tokenization import TokenizerError
from bert_lrp.cli.train import _number
from bert_lrp.training.trainer import TrainConfig, train

# label values in id order and their names, for the tasks whose labels are fixed
TASKS = {
    "sst2": (["0", "1"], ["negative", "positive"]),
    "sst5": (["0", "1", "2", "3", "4"], ["very negative", "negative", "neutral", "positive", "very positive"]),
    "sst3": (["0", "1", "2"], ["negative", "neutral", "positive"]),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--task_name", required=True, help=f"{', '.join(TASKS)}, or any name (labels read from train.tsv)")
    add("--data_dir", required=True)
    add("--vocab_file", required=True)
    add("--bert_config_file", required=True)
    add("--init_checkpoint", required=True, help="weights file or Hugging Face folder")
    add("--output_dir", required=True)
    add("--max_seq_length", type=_number(int, 1), default=128)
    add("--train_batch_size", type=_number(int, 1), default=32)
    add("--eval_batch_size", type=_number(int, 1), default=64)
    add("--learning_rate", type=float, default=5e-5)
    add("--num_train_epochs", type=float, default=3.0)
    add("--warmup_proportion", type=float, default=0.1)
    add("--gradient_accumulation_steps", type=_number(int, 1), default=1)
    add("--seed", type=int, default=42)
    add("--do_lower_case", action="store_true")
    add("--eval_test", action="store_true", help="also evaluate test.tsv with the best model")
    add("--eval_every", type=int, default=0, help="steps between evaluations (0: once per epoch)")
    add("--text_column", default="sentence")
    add("--label_column", default="label")
    # accepted for compatibility with the original script; they change nothing here
    add("--no_cuda", action="store_true")
    add("--local_rank", type=int, default=-1, help="ignored: use torchrun for several processes")
    add("--init_lrp", action="store_true", help="ignored: attribution needs no set-up")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    labels, names = TASKS.get(args.task_name.lower(), (None, None))
    test_file = os.path.join(args.data_dir, "test.tsv") if args.eval_test else None
    try:
        config = TrainConfig(
            train_file=os.path.join(args.data_dir, "train.tsv"), eval_file=os.path.join(args.data_dir, "dev.tsv"),
            test_file=test_file, output_dir=args.output_dir, text_column=args.text_column,
            label_column=args.label_column, labels=labels, label_names=names, max_length=args.max_seq_length,
            batch_size=args.train_batch_size, eval_batch_size=args.eval_batch_size, grad_accum=args.gradient_accumulation_steps,
            learning_rate=args.learning_rate, warmup_ratio=args.warmup_proportion, epochs=args.num_train_epochs,
            eval_every=args.eval_every, seed=args.seed, command="scripts/run_classifier.py " + shlex.join(argv))
        tokenizer = BertTokenizer.from_vocab(args.vocab_file, do_lower_case=args.do_lower_case)
        model = load_model(args.init_checkpoint, args.bert_config_file, labels, names, config)
        result = train(config, model=model, tokenizer=tokenizer)
    except (DataError, CheckpointError, ConfigError, TokenizerError, OSError) as error:
        print(f"run_classifier.py: error: {error}", file=sys.stderr)
        return 1
    for split in ("eval", "test"):
        if split in result:
            print(f"{split}: " + ", ".join(f"{k} = {v:.4f}" for k, v in result[split].items()))
    return 0


def load_model(checkpoint: str, config_file: str, labels, names, config: TrainConfig) -> BertForSequenceClassification:
    """The classifier with ``checkpoint``'s encoder weights and a fresh head of the right size."""
    if labels is None:
        from bert_lrp.training.data import infer_labels, read_table

        labels = infer_labels(read_table(config.train_file, config.text_column, config.label_column))
    bert_config = BertConfig.from_json_file(config_file).copy(num_labels=len(labels), id2label=dict(enumerate(names or labels)))
    if os.path.isdir(checkpoint):
        return BertForSequenceClassification.from_pretrained(checkpoint, config=bert_config)
    if not os.path.isfile(checkpoint):
        raise CheckpointError(f"init_checkpoint {checkpoint} not found (TensorFlow checkpoints: run "
                              "'bert-lrp convert' first)")
    return BertForSequenceClassification.from_pretrained(checkpoint, config=bert_config)


if __name__ == "__main__":
    sys.exit(main())
