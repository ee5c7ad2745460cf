"""Trainer: learning, exact resume, corrupt checkpoints, DDP == one process, accumulation, CLI."""
from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bert_lrp._io import atomic_write_text
from bert_lrp import BertConfig, BertForSequenceClassification, BertForTokenClassification, BertTokenizer
from bert_lrp.models.checkpoint import CheckpointError
from bert_lrp.cli.train import train_main
from bert_lrp.training.trainer import Processes, TrainConfig, Trainer, global_batches, linear_schedule

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "was", "plot", "acting", "very",
         "quite", "and", "but", "a", "story", "john", "paris", "visited", "met", "in", "london", "mary"]
POSITIVE = {"good", "great", "fine"}


def make_tokenizer(folder: Path) -> BertTokenizer:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s", "##ed"]
    # atomically: the ranks of a multi-process test write it at the same time (a plain write
    # truncates the file another rank is reading)
    atomic_write_text(folder / "vocab.txt", "\n".join(vocab) + "\n")
    return BertTokenizer.from_vocab(folder / "vocab.txt", do_lower_case=True)


def tiny_config(dropout: float = 0.1, **changes) -> BertConfig:
    values = dict(vocab_size=len(WORDS) + 7, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64, num_labels=2,
                  hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    values.update(changes)
    return BertConfig(**values)


def write_sentiment(path: Path, n: int, seed: int) -> Path:
    """A toy task: label 1 iff the sentence holds a positive word."""
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    neutral = [w for w in WORDS if w not in POSITIVE | {"bad", "awful", "poor"}]
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(neutral, rng.randint(1, 6))
        words.insert(rng.randint(0, len(words)), rng.choice(sorted(POSITIVE) if label else ["bad", "awful", "poor"]))
        lines.append(" ".join(words) + f"\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_trainer(tmp_path: Path, name: str = "run", dropout: float = 0.1, processes=None, n_train: int = 48,
                 **changes) -> Trainer:
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tokenizer = make_tokenizer(tmp_path)
    model = BertForSequenceClassification(tiny_config(dropout))
    values = dict(train_file=str(write_sentiment(tmp_path / "train.tsv", n_train, 1)),
                  eval_file=str(write_sentiment(tmp_path / "dev.tsv", 24, 2)),
                  output_dir=str(tmp_path / name), batch_size=8, eval_batch_size=16, learning_rate=1e-3,
                  epochs=2, save_every=2, eval_every=3, progress=False, seed=3, bucket_size=2)
    values.update(changes)
    return Trainer(TrainConfig(**values), model=model, tokenizer=tokenizer, processes=processes)


def weights(folder: str) -> dict:
    return load_file(os.path.join(folder, "model.safetensors"))


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# ------------------------------------------------------------------------------- pieces
def test_linear_schedule_matches_transformers_formula():
    assert linear_schedule(0, 10, 100) == 0.0
    assert linear_schedule(5, 10, 100) == 0.5
    assert linear_schedule(10, 10, 100) == 1.0
    assert linear_schedule(55, 10, 100) == pytest.approx(0.5)
    assert linear_schedule(100, 10, 100) == 0.0


def test_global_batches_are_deterministic_bucketed_and_cover_everything():
    lengths = [random.Random(i).randint(3, 60) for i in range(203)]
    a = global_batches(lengths, 8, epoch=0, seed=1, bucket_size=5)
    assert a == global_batches(lengths, 8, epoch=0, seed=1, bucket_size=5)
    assert a != global_batches(lengths, 8, epoch=1, seed=1, bucket_size=5)
    assert sorted(i for b in a for i in b) == list(range(203))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a) / len(a)
    assert spread < 15  # pools are sorted by length, so a batch holds similar lengths
    assert all(len(b) >= 2 for b in global_batches(lengths, 8, 0, 1, 5, min_size=2))


# ------------------------------------------------------------------------------- training
def test_loss_decreases_on_a_toy_task(tmp_path):
    trainer = make_trainer(tmp_path, epochs=6, n_train=96, eval_every=0, save_every=0, learning_rate=3e-3)
    before = trainer.evaluate(trainer.eval_set)
    result = trainer.train()
    assert result["eval"]["loss"] < before["loss"] - 0.1
    assert result["eval"]["accuracy"] >= 0.75
    out = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "metrics.json"):
        assert (out / name).is_file(), name
    log = (out / "training" / "eval_log.jsonl").read_text().splitlines()
    assert len(log) == 6  # one evaluation per epoch
    reloaded = BertForSequenceClassification.from_pretrained(out)
    assert reloaded.config.num_labels == 2


def test_resume_after_interruption_gives_the_same_weights(tmp_path):
    full = make_trainer(tmp_path / "a", epochs=3)
    full.train()
    total = full.total_steps
    assert total == 18
    first = make_trainer(tmp_path / "b", epochs=3, stop_after_steps=7)
    assert first.train() == {"interrupted_at_step": 7}
    # a fresh process: new model (different init), resume from the step-6 checkpoint
    second = make_trainer(tmp_path / "b", epochs=3, resume="auto")
    torch.manual_seed(1234)
    second.train()
    a = weights(str(tmp_path / "a" / "run" / "training" / "checkpoints" / f"step-{total}"))
    b = weights(str(tmp_path / "b" / "run" / "training" / "checkpoints" / f"step-{total}"))
    assert max_difference(a, b) <= 1e-6
    assert max_difference(weights(str(tmp_path / "a" / "run")), weights(str(tmp_path / "b" / "run"))) <= 1e-6


def test_corrupt_or_partial_checkpoint_is_reported_not_loaded(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1, stop_after_steps=2, eval_every=0)
    trainer.train()
    folder = tmp_path / "run" / "training" / "checkpoints" / "step-2"
    data = bytearray((folder / "optimizer.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (folder / "optimizer.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="optimizer.safetensors fails its SHA-256 check"):
        make_trainer(tmp_path, epochs=1, resume="auto").train()
    (folder / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="no manifest.json"):
        make_trainer(tmp_path, epochs=1, resume="auto").train()
    with open(folder / "model.safetensors", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(CheckpointError):
        make_trainer(tmp_path, epochs=1, resume=str(folder)).train()


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    make_trainer(tmp_path / "a", dropout=0.0, epochs=1, save_every=6, eval_every=0).train()
    make_trainer(tmp_path / "b", dropout=0.0, epochs=1, save_every=6, eval_every=0, grad_accum=2).train()
    assert max_difference(weights(str(tmp_path / "a" / "run")), weights(str(tmp_path / "b" / "run"))) <= 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        trainer = make_trainer(Path(folder), dropout=0.0, epochs=2, processes=Processes(rank, world))
        trainer.train()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    import torch.multiprocessing as mp

    single = make_trainer(tmp_path / "one", dropout=0.0, epochs=2)
    single_result = single.train()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    steps = single.total_steps
    a = weights(str(tmp_path / "one" / "run" / "training" / "checkpoints" / f"step-{steps}"))
    b = weights(str(tmp_path / "two" / "run" / "training" / "checkpoints" / f"step-{steps}"))
    assert max_difference(a, b) <= 1e-5
    import json

    metrics = json.loads((tmp_path / "two" / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["eval"]["accuracy"] == pytest.approx(single_result["eval"]["accuracy"])


# ------------------------------------------------------------------------------- tokens + CLI
def write_conll(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(n):
        for word in rng.sample(["john", "mary", "paris", "london", "visited", "met", "in", "the", "movie"], 5):
            tag = {"john": "I-PER", "mary": "I-PER", "paris": "I-LOC", "london": "I-LOC"}.get(word, "O")
            lines.append(f"{word} NN I-NP {tag}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_token_classification_learns_entities(tmp_path):
    torch.manual_seed(0)
    tokenizer = make_tokenizer(tmp_path)
    config = TrainConfig(train_file=str(write_conll(tmp_path / "train.txt", 64, 1)),
                         eval_file=str(write_conll(tmp_path / "valid.txt", 16, 2)), task="token",
                         output_dir=str(tmp_path / "ner"), batch_size=8, learning_rate=3e-3, epochs=4,
                         save_every=0, progress=False)
    model = BertForTokenClassification(tiny_config(0.0, num_labels=3))
    trainer = Trainer(config, model=model, tokenizer=tokenizer)
    assert trainer.labels == ["O", "I-LOC", "I-PER"]
    result = trainer.train()
    assert result["eval"]["f1"] >= 0.9
    assert BertForTokenClassification.from_pretrained(tmp_path / "ner").config.id2label == {0: "O", 1: "I-LOC", 2: "I-PER"}


def test_command_line_trains_and_reports_bad_data(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    make_tokenizer(model_dir)
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_config()).save_pretrained(model_dir)
    train_file = write_sentiment(tmp_path / "train.tsv", 16, 1)
    args = ["--train_file", str(train_file), "--eval_file", str(train_file), "--model", str(model_dir),
            "--output_dir", str(tmp_path / "out"), "--batch_size", "8", "--label_names", "negative,positive",
            "--save_dtype", "float16", "--no_progress"]
    assert train_main(args) == 0
    out = tmp_path / "out"
    assert weights(str(out))["classifier.weight"].dtype == torch.float16
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["command"].startswith("bert-lrp train --train_file")
    assert metrics["id2label"] == {"0": "negative", "1": "positive"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\ngood movie\t1\nbad movie\t0\textra\n", encoding="utf-8")
    from bert_lrp.cli import main as cli_main

    assert cli_main(["train"] + args[:1] + [str(bad)] + args[2:]) == 1
    assert f"{bad}, line 3: expected 2 fields as in the header, got 3" in capsys.readouterr().err


def test_early_stopping_bf16_and_export_only(tmp_path):
    trainer = make_trainer(tmp_path, epochs=10, eval_every=1, patience=2, learning_rate=1e-6, bf16=True)
    result = trainer.train()
    assert result["stopped_early"] and result["steps"] < trainer.total_steps
    assert result["best_step"] == 1  # a tiny learning rate never beats the first evaluation by much
    log = (tmp_path / "run" / "training" / "eval_log.jsonl").read_text().splitlines()
    assert len(log) == result["steps"]
    again = make_trainer(tmp_path, epochs=10, eval_every=1, patience=2, learning_rate=1e-6, bf16=True,
                         resume="auto", export_only=True).train()
    assert again["steps"] == result["steps"] and again["eval"] == result["eval"]


SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "minilm-sst2"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="the default model is not in the tree")
def test_shipped_default_model_is_small_labelled_and_right():
    import json

    assert (SHIPPED / "model.safetensors").stat().st_size <= 50 * 2 ** 20
    assert weights(str(SHIPPED))["classifier.weight"].dtype == torch.float16
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    assert metrics["eval"]["accuracy"] >= 0.85 and metrics["command"].startswith("bert-lrp train")
    model = BertForSequenceClassification.from_pretrained(SHIPPED)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    tokenizer = BertTokenizer.from_pretrained(SHIPPED)
    inputs = tokenizer(["a gripping , beautifully acted film .", "a dull , lifeless and boring mess ."])
    with torch.no_grad():
        assert model(**inputs).logits.argmax(-1).tolist() == [1, 0]
