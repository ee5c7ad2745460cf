"""Fine-tuning: sequence classification (tables) and token classification (CoNLL).

One trainer for one process or many (``torchrun``, DDP; gloo on CPU). ``batch_size`` is the
*global* batch of one optimizer step: it is split over processes and gradient-accumulation
micro-batches, and the loss is normalised by the global number of targets, so a run gives the
same weights (up to float rounding) whatever the number of processes or accumulation steps.

Resumable checkpoints (``work_dir/checkpoints/step-N``) hold the model, the optimizer, the
trainer state (step, data position, best score), every rank's RNG state and a manifest with the
SHA-256 of each file; a checkpoint that fails the check is reported, never loaded.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import FAILURE, RequestError
from ..output import (Guard, RunRecord, atomic_directory, atomic_write_text, check_resume, file_fingerprint,
                      open_for_append, output_lock, write_run, write_tensors)
from ..models.checkpoint import CheckpointError
from ..models.config import ConfigError
from ..models.auto import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer
from ..models.loading import resolve_model_dir
from ..models.tokenization import BertTokenizer
from .data import IGNORE_INDEX, Dataset, encode, infer_labels, read_examples
from .metrics import accuracy, entity_scores, macro_f1

logger = logging.getLogger("bert_lrp.training.trainer")

TASKS = ("sequence", "token")
METRICS = {"sequence": ("accuracy", "macro_f1"), "token": ("f1", "precision", "recall", "accuracy")}


class TrainConfigError(ConfigError, RequestError):
    """A training setting that is wrong in one :class:`TrainConfig` field (``field``, e.g.
    ``"metric"``): a :class:`ConfigError` as ever, shown by the command line as the field's flag
    (exit code 1 when the run finds it, e.g. label names that do not fit the data; ``bert-lrp
    train`` refuses a setting wrong in itself before the run, with exit code 2)."""

    exit_code = FAILURE


class ResumeFolderError(CheckpointError, RequestError):
    """``resume`` names a checkpoint folder that does not exist: a :class:`CheckpointError` of the
    field ``resume`` (exit code 1)."""

    exit_code = FAILURE


@dataclass
class TrainConfig:
    """Everything a run depends on. Paths may be relative to the working directory."""

    train_file: str
    model: Optional[str] = None          # folder with config.json, weights, vocab.txt; or pkg:<module>
    output_dir: str = "runs/model"       # the final model (config, weights, tokenizer, metrics.json)
    work_dir: Optional[str] = None       # checkpoints, best model, eval log (default: output_dir/training)
    eval_file: Optional[str] = None
    test_file: Optional[str] = None
    task: str = "sequence"
    text_column: Optional[str] = None  # None: the known names (bert_lrp.data.tables)
    pair_column: Optional[str] = None
    label_column: str = "label"
    labels: Optional[List[str]] = None   # label values in id order (default: sorted labels of train_file)
    label_names: Optional[List[str]] = None  # names stored as id2label (default: the label values)
    max_length: Optional[int] = None   # word pieces per example; None: min(128, the model's positions)
    batch_size: int = 32                 # global batch per optimizer step
    eval_batch_size: int = 64
    grad_accum: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    warmup_steps: Optional[int] = None
    max_grad_norm: float = 1.0
    epochs: float = 1.0
    max_steps: Optional[int] = None
    bucket_size: int = 50                # batches per length-sorted pool
    eval_every: int = 0                  # steps; 0 = only at the end of each epoch
    save_every: int = 500                # steps; 0 = only at the end of each epoch
    keep_checkpoints: int = 2
    patience: int = 0                    # evaluations without improvement before stopping; 0 = never
    metric: Optional[str] = None         # accuracy/macro_f1 (sequence), f1 (token)
    seed: int = 42
    freeze_word_embeddings: bool = False  # saves the AdamW update of the largest matrix (vocab x hidden)
    freeze_layers: Optional[List[int]] = None  # encoder layers (1-based) not trained (bert_lrp.models.ablation.freeze_layers)
    bf16: bool = False
    threads: Optional[int] = None
    save_dtype: str = "float32"          # dtype of the exported weights (float16 halves the size)
    resume: Optional[str] = None         # "auto" (latest in work_dir) or a checkpoint folder
    stop_after_steps: Optional[int] = None  # end this run after N steps, as if interrupted
    export_only: bool = False            # with resume: export the best model so far, train no further
    progress: bool = True
    command: Optional[str] = None        # recorded in metrics.json

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise TrainConfigError("task", f"must be one of {', '.join(TASKS)}, got {self.task!r}")
        for name in ("batch_size", "eval_batch_size", "grad_accum", "max_length", "bucket_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TrainConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.save_dtype not in SAVE_DTYPES:
            raise TrainConfigError("save_dtype", f"must be one of {', '.join(SAVE_DTYPES)}, got {self.save_dtype!r}")
        if self.work_dir is None:
            self.work_dir = os.path.join(self.output_dir, "training")
        _refuse_overwriting_the_source(self)
        if self.metric is None:
            self.metric = "f1" if self.task == "token" else "accuracy"
        if self.metric not in METRICS[self.task]:
            raise TrainConfigError("metric", f"{self.metric!r} is not a score of the task {self.task!r}; "
                                             f"choose from {', '.join(METRICS[self.task])}")


SAVE_DTYPES = ("float32", "float16", "bfloat16")


# --------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class Processes:
    """This process's ``rank`` among ``world`` training processes."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, value: Any) -> List[Any]:
        """Every rank's ``value``, in rank order (a collective: all ranks must call it)."""
        if self.world == 1:
            return [value]
        values: List[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values


def init_processes(backend: Optional[str] = None) -> Processes:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return Processes(dist.get_rank(), dist.get_world_size())


# --------------------------------------------------------------------------- batches
def global_batches(lengths: Sequence[int], batch_size: int, epoch: int, seed: int, bucket_size: int = 50,
                   min_size: int = 1) -> List[List[int]]:
    """Index lists of one epoch: shuffle, sort pools of ``bucket_size`` batches by length, cut them
    into batches, shuffle the batches. Deterministic in ``(seed, epoch)``; batches smaller than
    ``min_size`` (there can be one, the last of the last pool) are dropped."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * bucket_size
    batches = []
    for begin in range(0, len(order), pool):
        chunk = sorted(order[begin:begin + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    batches = [b for b in batches if len(b) >= min_size]
    permutation = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in permutation]


def micro_batches(batch: List[int], processes: Processes, grad_accum: int) -> List[List[int]]:
    """This rank's ``grad_accum`` micro-batches of a global batch (strided, so lengths balance)."""
    parts = processes.world * grad_accum
    return [batch[m * processes.world + processes.rank::parts] for m in range(grad_accum)]


def collate(features: Sequence, pad_id: int = 0) -> Dict[str, torch.Tensor]:
    """Pad to the longest: ``input_ids``, ``token_type_ids``, ``attention_mask`` ``[batch, seq]``;
    ``labels`` ``[batch]`` or ``[batch, seq]`` (padding -100)."""
    width = max(len(f) for f in features)
    batch = len(features)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    types = torch.zeros((batch, width), dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    token_level = isinstance(features[0].label, list)
    labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long) if token_level else \
        torch.tensor([f.label for f in features], dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f)
        ids[row, :n] = torch.tensor(f.input_ids)
        types[row, :n] = torch.tensor(f.token_type_ids)
        mask[row, :n] = 1
        if token_level:
            labels[row, :n] = torch.tensor(f.label)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}


def count_targets(features: Sequence) -> int:
    """Number of loss terms: examples, or labelled word pieces."""
    if features and isinstance(features[0].label, list):
        return sum(sum(1 for t in f.label if t != IGNORE_INDEX) for f in features)
    return len(features)


# --------------------------------------------------------------------------- optimisation
def build_optimizer(model: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights get no weight decay."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate)


def linear_schedule(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor of optimizer step ``step`` (0-based): linear warm-up, then linear decay
    to 0 (as transformers' ``get_linear_schedule_with_warmup``)."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


# --------------------------------------------------------------------------- state
@dataclass
class TrainerState:
    """Where a run is: optimizer steps done, data position, best evaluation so far."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: Optional[float] = None
    best_step: Optional[int] = None
    bad_evaluations: int = 0
    stopped_early: bool = False
    last_eval_step: int = -1
    train_seconds: float = 0.0
    examples_seen: int = 0


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str) -> None:
    files = {name: {"sha256": _sha256(os.path.join(folder, name)), "bytes": os.path.getsize(os.path.join(folder, name))}
             for name in sorted(os.listdir(folder)) if name != "manifest.json"}
    atomic_write_text(os.path.join(folder, "manifest.json"), json.dumps({"files": files}, indent=2) + "\n")


def verify_checkpoint(folder: str) -> None:
    """Raise :class:`CheckpointError` unless every file the manifest lists is present and intact."""
    manifest_path = os.path.join(folder, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise CheckpointError(f"checkpoint {folder} has no manifest.json: it is incomplete (interrupted while "
                              "saving?); delete it or resume from another checkpoint")
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            files = json.load(handle)["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {folder}: manifest.json is unreadable ({error})") from None
    for name, expected in files.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint {folder}: {name} is missing")
        size = os.path.getsize(path)
        if size != expected["bytes"]:
            raise CheckpointError(f"checkpoint {folder}: {name} has {size} bytes, the manifest says "
                                  f"{expected['bytes']} (truncated or overwritten)")
        if _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {folder}: {name} fails its SHA-256 check (corrupt)")


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> Tuple[Dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: Dict[str, torch.Tensor], meta: dict) -> dict:
    state: Dict[int, Dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
              for group in meta["param_groups"]]  # JSON turned tuples (betas) into lists
    return {"state": state, "param_groups": groups}


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(saved: dict) -> None:
    torch.set_rng_state(saved["torch"])
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_is_loadable(folder: str) -> bool:
    """True if ``folder`` passes :func:`verify_checkpoint` and its files open (safetensors headers
    checked against the file sizes, ``trainer_state.json`` parsed); no tensor is loaded."""
    from safetensors import safe_open

    try:
        verify_checkpoint(folder)
        for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
            with safe_open(os.path.join(folder, name), framework="pt") as handle:
                handle.keys()
        _read_json(os.path.join(folder, "trainer_state.json"))["state"]
    except (CheckpointError, SafetensorError, OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# Temporary names of atomic writes (bert_lrp._io): ".<name>.<random>.tmp", plus ".old" for the
# previous folder while it is being replaced.
_STALE_CHECKPOINT = re.compile(r"\.(step-\d+)\.[A-Za-z0-9_]+\.tmp(\.old)?")
_STALE_BEST = re.compile(r"\.(best)\.[A-Za-z0-9_]+\.tmp(\.old)?")
_STALE_OUTPUT = re.compile(r"\.(config\.json|model\.safetensors|vocab\.txt|tokenizer_config\.json|metrics\.json)"
                           r"\.[A-Za-z0-9_]+\.tmp")


def remove_stale_temporaries(work_dir: str, output_dir: Optional[str] = None) -> List[str]:
    """Remove what a killed save left behind: ``.step-N.*.tmp`` folders in ``work_dir/checkpoints``,
    ``.best.*.tmp`` in ``work_dir`` and half-written ``.<file>.*.tmp`` files in ``output_dir``.
    A ``.tmp.old`` folder (the previous copy, moved aside while being replaced) is put back if the
    kill left no folder under its name, else removed. Logs one line; returns what it removed."""
    removed: List[str] = []
    restored: List[str] = []
    places = [(os.path.join(work_dir, "checkpoints"), _STALE_CHECKPOINT), (work_dir, _STALE_BEST)]
    if output_dir is not None:
        places.append((output_dir, _STALE_OUTPUT))
    for folder, pattern in places:
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            match = pattern.fullmatch(name)
            if not match:
                continue
            path = os.path.join(folder, name)
            target = os.path.join(folder, match.group(1))
            if len(match.groups()) > 1 and match.group(2) and not os.path.exists(target):
                os.replace(path, target)
                restored.append(path)
            elif os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            else:
                os.remove(path)
                removed.append(path)
    if removed or restored:
        notes = [f"removed {len(removed)} stale temporary item(s) left by an interrupted save: {', '.join(removed)}"
                 ] if removed else []
        notes += [f"put back {', '.join(restored)} (the previous copy, moved aside by an interrupted save)"
                  ] if restored else []
        logger.warning("; ".join(notes))
    return removed


def checkpoint_folders(work_dir: str) -> List[Tuple[int, str]]:
    """``(step, folder)`` of the finished-looking checkpoints in ``work_dir``, newest first."""
    root = os.path.join(work_dir, "checkpoints")
    found = []
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith("step-") and name[5:].isdigit():
                found.append((int(name[5:]), os.path.join(root, name)))
    return sorted(found, reverse=True)


DEFAULT_MAX_LENGTH = 128


def _fitted_max_length(asked: Optional[int], model_config, tokenizer) -> int:
    """Word pieces per example: ``asked``, else min(128, what the model reads); an ``asked``
    length beyond the model's positions is a :class:`~bert_lrp.errors.RequestError` of
    ``max_length`` (it would fail at step 0)."""
    offset = 2 if model_config.model_type == "roberta" else 0  # RoBERTa's positions start after the padding id
    positions = min(model_config.max_position_embeddings - offset, tokenizer.model_max_length)
    if asked is None:
        return min(DEFAULT_MAX_LENGTH, positions)
    if asked > positions:
        raise RequestError("max_length", f"{asked} is more than the model reads ({positions} positions)")
    return asked


# the files the export writes in output_dir (save_pretrained of the model and the tokenizer, metrics.json)
EXPORT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt", "vocab.json", "merges.txt",
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "metrics.json")
# the settings a resumed run must share with the run it continues (work_dir/run.json)
RUN_SETTINGS = ("task", "text_column", "pair_column", "label_column", "labels", "label_names", "max_length",
                "batch_size", "grad_accum", "learning_rate", "weight_decay", "warmup_ratio", "warmup_steps",
                "max_grad_norm", "epochs", "max_steps", "bucket_size", "seed",
                "freeze_word_embeddings", "freeze_layers", "bf16")


def _refuse_overwriting_the_source(config: "TrainConfig") -> None:
    """``--output-dir`` and ``--work-dir`` must not be the ``--model`` folder (the export would
    replace the weights training starts from), and no file the run writes may be one it reads
    (the data files, the model's files: by identity, so symlinks and hard links too)."""
    model_dir = config.model if config.model is not None and os.path.isdir(config.model) else None
    if model_dir is not None:
        source = os.path.realpath(model_dir)
        for field, folder in (("output_dir", config.output_dir), ("work_dir", config.work_dir)):
            if os.path.realpath(folder) == source:
                raise RequestError(field, f"{folder}: is the folder of the model {model_dir}: training would "
                                          "overwrite the model it starts from; choose another folder")
    guard = Guard.for_run([("the train file", config.train_file), ("the eval file", config.eval_file),
                           ("the test file", config.test_file)], model_dir)
    guard.check_files_in("output_dir", config.output_dir, EXPORT_FILES)
    guard.check_files_in("work_dir", config.work_dir, ("eval_log.jsonl", "run.json"))


def run_record(config: "TrainConfig") -> Dict[str, Any]:
    """What a run records in ``work_dir/run.json`` and a resumed run must share: the data's and
    the starting weights' fingerprints and the settings that change the training."""
    from ..models.checkpoint import find_weights

    inputs = {name: file_fingerprint(path) for name, path in (("train_file", config.train_file),
                                                              ("eval_file", config.eval_file)) if path}
    weights = file_fingerprint(find_weights(model_path(config.model))) if config.model else None
    settings = {name: getattr(config, name) for name in RUN_SETTINGS}
    return RunRecord(inputs, weights, settings).to_json()


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Fine-tunes ``model`` on ``config.train_file``; see :func:`train` for the one-call version."""

    def __init__(self, config: TrainConfig, model: Optional[nn.Module] = None,
                 tokenizer: Optional[BertTokenizer] = None, processes: Optional[Processes] = None) -> None:
        self.config = config
        self.processes = processes or init_processes()
        if config.threads:
            torch.set_num_threads(config.threads)
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        columns = dict(text_column=config.text_column, label_column=config.label_column,
                       pair_column=config.pair_column)
        train_examples = read_examples(config.train_file, config.task, **columns)
        self.labels = list(config.labels or infer_labels(train_examples))
        self.label2id = {label: i for i, label in enumerate(self.labels)}
        names = config.label_names or self.labels
        if len(names) != len(self.labels):
            raise TrainConfigError("label_names", f"{len(names)} names for {len(self.labels)} labels "
                                                  f"({', '.join(self.labels)})")
        self.id2label = dict(enumerate(names))
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_path(config.model))
        self.model = model if model is not None else self._load_model()
        if self.model.config.num_labels != len(self.labels):
            raise ConfigError(f"the model has {self.model.config.num_labels} outputs but the data has "
                              f"{len(self.labels)} labels ({', '.join(self.labels)})")
        self.model.config.id2label = dict(self.id2label)
        self.max_length = _fitted_max_length(config.max_length, self.model.config, self.tokenizer)
        self.train_set = self._dataset(train_examples)
        self.eval_set = self._read(config.eval_file, columns)
        self.test_set = self._read(config.test_file, columns)
        self.state = TrainerState()
        steps_per_epoch = len(self._batches(0))
        total = math.ceil(config.epochs * steps_per_epoch)
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        self.steps_per_epoch = steps_per_epoch
        warmup = config.warmup_steps if config.warmup_steps is not None else config.warmup_ratio * self.total_steps
        self.warmup_steps = int(math.ceil(warmup))
        self.model.train()
        if config.freeze_word_embeddings:
            self.model.get_input_embeddings().weight.requires_grad_(False)
        if config.freeze_layers:  # before the optimizer is built, which leaves frozen parameters out
            from ..models.ablation import freeze_layers

            freeze_layers(self.model, config.freeze_layers, "freeze_layers")
        self.wrapped = self.model
        if self.processes.world > 1:
            self.wrapped = nn.parallel.DistributedDataParallel(self.model)
        self.optimizer = build_optimizer(self.model, config.learning_rate, config.weight_decay)
        self.log_path = os.path.join(config.work_dir, "eval_log.jsonl")

    # ----------------------------------------------------------------- setup
    def _load_model(self) -> nn.Module:
        # any supported family: config.json's model_type picks the class
        cls = AutoModelForTokenClassification if self.config.task == "token" else AutoModelForSequenceClassification
        return cls.from_pretrained(model_path(self.config.model), num_labels=len(self.labels),
                                   id2label=self.id2label)

    def _dataset(self, examples) -> Dataset:
        return Dataset(examples, encode(examples, self.tokenizer, self.label2id, self.max_length))

    def _read(self, path: Optional[str], columns: dict) -> Optional[Dataset]:
        return None if path is None else self._dataset(read_examples(path, self.config.task, **columns))

    def _batches(self, epoch: int) -> List[List[int]]:
        c = self.config
        return global_batches(self.train_set.lengths, c.batch_size, epoch, c.seed, c.bucket_size,
                              min_size=self.processes.world * c.grad_accum)

    # ----------------------------------------------------------------- training
    def train(self) -> Dict[str, Any]:
        """Run (or resume) training; evaluate, checkpoint, export. Returns the final metrics."""
        with output_lock(self.config.output_dir, self.processes.rank):
            return self._train()

    def _start_run(self) -> None:
        """Main process: a resumed run must have the data, weights and settings of the run it
        continues (``work_dir/run.json``); a new run records them."""
        c = self.config
        if not self.processes.main:
            return
        record = run_record(c)
        run_file = os.path.join(c.work_dir, "run.json")
        if not c.resume:
            write_run(run_file, record)
        elif check_resume("resume", c.work_dir, run_file, record, overwrite=False,
                          advice="start without resuming, or use another work folder") is None:
            write_run(run_file, record)  # a work folder of an older version: recorded from now on

    def _train(self) -> Dict[str, Any]:
        c = self.config
        if self.processes.main:
            remove_stale_temporaries(c.work_dir, c.output_dir)
        self._start_run()
        if c.resume:
            self._resume(c.resume)
        state = self.state
        if c.export_only:
            return self.export()
        progress = self._progress()
        steps_this_run, started = 0, time.perf_counter()

        def interrupted() -> bool:
            return bool(c.stop_after_steps) and steps_this_run >= c.stop_after_steps

        while state.step < self.total_steps and not state.stopped_early and not interrupted():
            batches = self._batches(state.epoch)  # deterministic in (seed, epoch): resuming skips ahead
            while state.batch_in_epoch < len(batches) and state.step < self.total_steps:
                tick = time.perf_counter()
                loss = self._step(batches[state.batch_in_epoch])
                state.train_seconds += time.perf_counter() - tick
                state.examples_seen += len(batches[state.batch_in_epoch])
                state.step += 1
                state.batch_in_epoch += 1
                steps_this_run += 1
                if progress is not None:
                    rate = steps_this_run * c.batch_size / max(time.perf_counter() - started, 1e-9)
                    progress.set_postfix(loss=f"{loss:.4f}", epoch=state.epoch, sent_per_s=f"{rate:.1f}", refresh=False)
                    progress.update(1)
                epoch_done = state.batch_in_epoch == len(batches)
                if epoch_done:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if epoch_done or (c.eval_every and state.step % c.eval_every == 0):
                    self._evaluate_and_track()
                if epoch_done or state.stopped_early or (c.save_every and state.step % c.save_every == 0):
                    self.save_checkpoint()
                if epoch_done or state.stopped_early or interrupted():
                    break  # a new epoch needs new batches
        if progress is not None:
            progress.close()
        if interrupted() and state.step < self.total_steps:
            return {"interrupted_at_step": state.step}
        if state.last_eval_step != state.step:  # max_steps ended the run inside an epoch
            self._evaluate_and_track()
            self.save_checkpoint()
        return self.export()

    def _progress(self):
        if not (self.config.progress and self.processes.main):
            return None
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()
        return tqdm(total=self.total_steps, initial=self.state.step, desc="train", unit="step",
                    mininterval=1.0 if interactive else 30.0, dynamic_ncols=True)

    def _step(self, batch: List[int]) -> float:
        """One optimizer step on a global batch of train indices; returns the global mean loss."""
        c, processes = self.config, self.processes
        features = [self.train_set.features[i] for i in batch]
        total = count_targets(features)
        factor = linear_schedule(self.state.step, self.warmup_steps, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = c.learning_rate * factor
        loss_sum = 0.0
        parts = micro_batches(batch, processes, c.grad_accum)
        for index, part in enumerate(parts):
            sync = index == len(parts) - 1 or processes.world == 1
            context = contextlib.nullcontext() if sync else self.wrapped.no_sync()
            with context:
                inputs = collate([self.train_set.features[i] for i in part], self.tokenizer.pad_token_id)
                labels = inputs.pop("labels")
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.bf16):
                    logits = self.wrapped(**inputs, return_dict=False)[0]
                summed = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                         ignore_index=IGNORE_INDEX, reduction="sum")
                (summed * (processes.world / total)).backward()
                loss_sum += summed.item()
        if c.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if processes.world > 1:
            loss_sum = sum(processes.gather(loss_sum))
        return loss_sum / max(total, 1)

    # ----------------------------------------------------------------- evaluation
    def _evaluate_and_track(self) -> None:
        state = self.state
        if self.eval_set is None or state.last_eval_step == state.step:
            return
        metrics = self.evaluate(self.eval_set)
        state.last_eval_step = state.step
        score = metrics[self.config.metric]
        improved = state.best_score is None or score > state.best_score
        if improved:
            state.best_score, state.best_step, state.bad_evaluations = score, state.step, 0
            self._save_best(metrics)
        else:
            state.bad_evaluations += 1
            if self.config.patience and state.bad_evaluations >= self.config.patience:
                state.stopped_early = True
        record = {"step": state.step, "epoch": round(state.step / self.steps_per_epoch, 4), **metrics,
                  "best": improved, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if self.processes.main:
            os.makedirs(self.config.work_dir, exist_ok=True)
            with open_for_append(self.log_path) as handle:
                handle.write(json.dumps(record) + "\n")
            logger.info("eval at step %d: %s", state.step, json.dumps(metrics))
            if self.config.progress:
                print(f"[eval] step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                      + (" (best)" if improved else ""), file=sys.stderr, flush=True)

    @torch.no_grad()
    def evaluate(self, dataset: Dataset) -> Dict[str, float]:
        """Loss and metrics on ``dataset``, computed across all ranks (every rank gets the result)."""
        was_training = self.model.training
        self.model.eval()
        mine = list(range(self.processes.rank, len(dataset), self.processes.world))
        mine.sort(key=lambda i: len(dataset.features[i]))
        predictions: Dict[int, Any] = {}
        loss_sum, count = 0.0, 0
        for begin in range(0, len(mine), self.config.eval_batch_size):
            part = mine[begin:begin + self.config.eval_batch_size]
            inputs = collate([dataset.features[i] for i in part], self.tokenizer.pad_token_id)
            labels = inputs.pop("labels")
            logits = self.model(**inputs, return_dict=False)[0].float()  # float32 even with --bf16
            loss_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                        ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((labels != IGNORE_INDEX).sum())
            best = logits.argmax(-1)
            for row, index in enumerate(part):
                predictions[index] = best[row].tolist()
        if was_training:
            self.model.train()
        merged: Dict[int, Any] = {}
        for part_predictions in self.processes.gather(predictions):
            merged.update(part_predictions)
        totals = self.processes.gather((loss_sum, count))
        loss = sum(t[0] for t in totals) / max(1, sum(t[1] for t in totals))
        return {"loss": loss, **self._scores(dataset, merged)}

    def _scores(self, dataset: Dataset, predictions: Dict[int, Any]) -> Dict[str, float]:
        if self.config.task == "sequence":
            gold = [f.label for f in dataset.features]
            predicted = [predictions[i] for i in range(len(dataset))]
            return {"accuracy": accuracy(gold, predicted),
                    "macro_f1": macro_f1(gold, predicted, labels=range(len(self.labels)))}
        gold_tags, predicted_tags = [], []
        for index, (example, features) in enumerate(zip(dataset.examples, dataset.features)):
            words = ["O"] * len(example.text)
            previous = None
            for position, word in enumerate(features.word_ids):
                if word is not None and word != previous:
                    words[word] = self.labels[predictions[index][position]]
                previous = word
            gold_tags.append(list(example.label))
            predicted_tags.append(words)
        scores = entity_scores(gold_tags, predicted_tags)
        flat_gold = [t for s in gold_tags for t in s]
        flat_predicted = [t for s in predicted_tags for t in s]
        return {**scores, "accuracy": accuracy(flat_gold, flat_predicted)}

    # ----------------------------------------------------------------- saving
    def _save_best(self, metrics: Dict[str, float]) -> None:
        if self.processes.main:
            with atomic_directory(os.path.join(self.config.work_dir, "best")) as folder:
                self.model.save_pretrained(folder)
                atomic_write_text(os.path.join(folder, "eval.json"),
                                  json.dumps({"step": self.state.step, **metrics}, indent=2) + "\n")
        self.processes.barrier()

    def save_checkpoint(self) -> Optional[str]:
        """Write ``work_dir/checkpoints/step-N`` atomically (rank 0); all ranks must call this."""
        rng_states = self.processes.gather(_rng_state())
        folder = os.path.join(self.config.work_dir, "checkpoints", f"step-{self.state.step}")
        if self.processes.main:
            with atomic_directory(folder) as temporary:
                model_state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
                write_tensors(os.path.join(temporary, "model.safetensors"), model_state)
                tensors, meta = _optimizer_to_files(self.optimizer)
                write_tensors(os.path.join(temporary, "optimizer.safetensors"), tensors)
                write_tensors(os.path.join(temporary, "rng.safetensors"),
                              {f"rank{r}": s["torch"] for r, s in enumerate(rng_states)})
                trainer = {"state": dataclasses.asdict(self.state), "optimizer": meta,
                           "python_rng": [s["python"] for s in rng_states], "world": self.processes.world,
                           "total_steps": self.total_steps, "labels": self.labels,
                           "config": dataclasses.asdict(self.config)}
                atomic_write_text(os.path.join(temporary, "trainer_state.json"), json.dumps(trainer, indent=1) + "\n")
                write_manifest(temporary)
            for _, old in checkpoint_folders(self.config.work_dir)[max(1, self.config.keep_checkpoints):]:
                shutil.rmtree(old, ignore_errors=True)
        self.processes.barrier()
        return folder

    def _resume(self, where: str) -> None:
        if where == "auto":
            found = checkpoint_folders(self.config.work_dir)
            if not found:
                if self.processes.main:
                    logger.warning("no checkpoint in %s; starting from scratch", self.config.work_dir)
                return
            folder = found[0][1]
        else:
            folder = where
            if not os.path.isdir(folder):
                raise ResumeFolderError("resume", f"{folder}: no such checkpoint folder; " + self._instead_of(None))
        try:
            verify_checkpoint(folder)
        except CheckpointError as error:
            raise CheckpointError(f"{error}; {self._instead_of(folder)}") from error
        trainer = self._read_file(folder, "trainer_state.json", _read_json)
        try:
            labels, total_steps = trainer["labels"], trainer["total_steps"]
            saved_state = TrainerState(**trainer["state"])
            optimizer_meta, world = trainer["optimizer"], trainer["world"]
            python_rng = trainer["python_rng"]
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"checkpoint {folder}: trainer_state.json lacks or mangles {error} "
                                  f"(written by another version?); {self._instead_of(folder)}") from error
        if labels != self.labels:
            raise CheckpointError(f"checkpoint {folder} was trained with labels {labels}, "
                                  f"this run has {self.labels}")
        if total_steps != self.total_steps:
            raise CheckpointError(f"checkpoint {folder} belongs to a run of {total_steps} steps, "
                                  f"this run has {self.total_steps} (different data, batch size or epochs?)")
        state = self._read_file(folder, "model.safetensors", load_file)
        self._read_file(folder, "model.safetensors", lambda _: self.model.load_state_dict(state))
        optimizer = self._read_file(folder, "optimizer.safetensors", load_file)
        self._read_file(folder, "optimizer.safetensors", lambda _: self.optimizer.load_state_dict(
            _optimizer_from_files(optimizer, optimizer_meta)))
        rng = self._read_file(folder, "rng.safetensors", load_file)
        rank = self.processes.rank
        if world == self.processes.world:
            self._read_file(folder, "rng.safetensors", lambda _: _set_rng_state(
                {"torch": rng[f"rank{rank}"], "python": python_rng[rank]}))
        else:
            logger.warning("checkpoint %s was written by %d processes, this run has %d: dropout masks will "
                           "differ from an uninterrupted run", folder, world, self.processes.world)
            torch.manual_seed(self.config.seed + 1000 * saved_state.step + rank)
        self.state = saved_state
        if self.processes.main:
            logger.info("resumed from %s at step %d", folder, self.state.step)

    def _read_file(self, folder: str, name: str, read: Any) -> Any:
        """``read(folder/name)``; any failure becomes a :class:`CheckpointError` naming the file and
        what to resume from instead (the manifest only proves the bytes are the ones saved)."""
        path = os.path.join(folder, name)
        try:
            return read(path)
        except (SafetensorError, OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as error:
            reason = " ".join(str(error).split())[:300] or type(error).__name__
            raise CheckpointError(f"checkpoint {folder}: {name} cannot be loaded ({type(error).__name__}: "
                                  f"{reason}); {self._instead_of(folder)}") from error

    def _instead_of(self, folder: Optional[str]) -> str:
        """Advice: the newest intact checkpoint older than ``folder`` (any, if ``folder`` is None) in
        the work folder, if there is one."""
        root = os.path.join(self.config.work_dir, "checkpoints")
        limit = None
        if folder is not None:
            match = re.fullmatch(r"step-(\d+)", os.path.basename(os.path.normpath(folder)))
            limit = int(match.group(1)) if match else None
        for step, other in checkpoint_folders(self.config.work_dir):
            if folder is not None and (os.path.abspath(other) == os.path.abspath(folder)
                                       or (limit is not None and step >= limit)):
                continue
            if not checkpoint_is_loadable(other):
                continue
            if folder is None:
                return f"the newest intact checkpoint is {other} (step {step}): resume from {other}"
            return (f"the earlier checkpoint {other} (step {step}) is intact: resume from {other} "
                    f"(or delete {folder} and resume from the newest)")
        if folder is None:
            return f"there is no intact checkpoint in {root}: start without resuming"
        return f"no earlier intact checkpoint in {root}: delete {folder} and start again without resuming"

    def export(self) -> Dict[str, Any]:
        """Write the best (else the last) model, the tokenizer and ``metrics.json`` to ``output_dir``."""
        c, state = self.config, self.state
        best = os.path.join(c.work_dir, "best")
        best_metrics = None
        if os.path.isfile(os.path.join(best, "model.safetensors")):
            self.model.load_state_dict(load_file(os.path.join(best, "model.safetensors")))
            with open(os.path.join(best, "eval.json"), encoding="utf-8") as handle:
                best_metrics = {k: v for k, v in json.load(handle).items() if k != "step"}
        result: Dict[str, Any] = {"task": c.task, "train_file": c.train_file, "eval_file": c.eval_file,
                                  "metric": c.metric, "best_step": state.best_step, "steps": state.step,
                                  "total_steps": self.total_steps, "epochs": round(state.step / self.steps_per_epoch, 4),
                                  "stopped_early": state.stopped_early, "processes": self.processes.world,
                                  "train_seconds": round(state.train_seconds, 1),
                                  "train_sentences_per_second": round(state.examples_seen / max(state.train_seconds, 1e-9), 2),
                                  "labels": self.labels, "id2label": {str(k): v for k, v in self.id2label.items()}}
        if self.eval_set is not None:  # the best model's scores, measured when it was saved
            result["eval"] = best_metrics if best_metrics is not None else self.evaluate(self.eval_set)
        if self.test_set is not None:
            result["test"] = self.evaluate(self.test_set)
        result["command"] = c.command
        result["config"] = {k: v for k, v in dataclasses.asdict(c).items() if k not in ("command",)}
        if self.processes.main:
            dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[c.save_dtype]
            self.model.save_pretrained(c.output_dir, dtype=dtype)  # each file atomically (bert_lrp.output)
            self.tokenizer.save_pretrained(c.output_dir)
            atomic_write_text(os.path.join(c.output_dir, "metrics.json"), json.dumps(result, indent=2) + "\n")
        self.processes.barrier()
        return result


def model_path(model: Optional[str]) -> str:
    """``--model`` resolved by :func:`bert_lrp.models.loading.resolve_model_dir` (a folder, a hub id
    in the local cache, or ``pkg:<module>`` of an installed weights package); training needs one."""
    if not model:
        raise TrainConfigError("model", "none given; training needs a folder holding config.json, weights and "
                                        "vocab.txt (or pkg:<module>)")
    return str(resolve_model_dir(model))


def train(config: TrainConfig, model: Optional[nn.Module] = None,
          tokenizer: Optional[BertTokenizer] = None) -> Dict[str, Any]:
    """Fine-tune and export; returns the metrics also written to ``output_dir/metrics.json``."""
    return Trainer(config, model, tokenizer).train()
