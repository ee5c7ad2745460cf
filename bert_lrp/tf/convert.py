"""Convert Google's TensorFlow BERT checkpoints into Hugging Face-style folders, without TensorFlow.

Variables are renamed from Google's scheme (``bert/encoder/layer_3/attention/self/query/kernel``)
to the Hugging Face state-dict names our models use
(``bert.encoder.layer.3.attention.self.query.weight``); ``kernel`` tensors are transposed from
TF's ``[in, out]`` to PyTorch's ``[out, in]``. Optimizer state is skipped. Tensors are read one at
a time straight into the model's parameters, so peak memory is about one model plus one tensor.
The commands ``bert-lrp convert`` and ``bert-lrp inspect-checkpoint`` are :mod:`bert_lrp.cli.convert`.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ..errors import FAILURE, RequestError
from ..output import Guard, atomic_directory, atomic_write, output_lock, write_tensors, write_torch
from .bundle import (
    CheckpointFormatError,
    ChecksumError,
    TFCheckpointError,
    TFCheckpointReader,
)

__all__ = [
    "ConversionError",
    "OutputNotEmptyError",
    "ConversionReport",
    "HEADS",
    "is_training_state",
    "tf_to_hf_name",
    "plan_conversion",
    "detect_head",
    "convert_tf_to_model",
    "convert_tf_checkpoint",
    "save_weights_file",
    "format_names",
]

HEADS = ("auto", "pretraining", "masked_lm", "classifier", "none")

# Path components that mark optimizer or bookkeeping state rather than model weights.
TRAINING_STATE_COMPONENTS = frozenset({
    "adam_m", "adam_v", "AdamWeightDecayOptimizer", "AdamWeightDecayOptimizer_1", "global_step",
    "Adam", "Adam_1", "beta1_power", "beta2_power",  # tf.compat.v1.train.AdamOptimizer
    ".OPTIMIZER_SLOT", "optimizer", "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH",  # TF2
})
TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

_LINEAR = r"(?:attention/self/(?:query|key|value)|attention/output/dense|intermediate/dense|output/dense)"
_NORM = r"(?:attention/output|output)/LayerNorm"
# (pattern over the TF name, replacement giving the HF name before the leaf is translated)
_RULES: Tuple[Tuple[re.Pattern, str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"bert/embeddings/(word|position|token_type)_embeddings", r"bert.embeddings.\1_embeddings/<embedding>"),
    (r"bert/embeddings/LayerNorm/(gamma|beta)", r"bert.embeddings.LayerNorm/\1"),
    (rf"bert/encoder/layer_(\d+)/({_LINEAR})/(kernel|bias)", r"bert.encoder.layer.\1.\2/\3"),
    (rf"bert/encoder/layer_(\d+)/({_NORM})/(gamma|beta)", r"bert.encoder.layer.\1.\2/\3"),
    (r"bert/pooler/dense/(kernel|bias)", r"bert.pooler.dense/\1"),
    (r"cls/predictions/transform/dense/(kernel|bias)", r"cls.predictions.transform.dense/\1"),
    (r"cls/predictions/transform/LayerNorm/(gamma|beta)", r"cls.predictions.transform.LayerNorm/\1"),
    (r"cls/predictions/output_bias", r"cls.predictions/<bias>"),
    (r"cls/seq_relationship/output_(weights|bias)", r"cls.seq_relationship/\1"),
    (r"output_(weights|bias)", r"classifier/\1"),  # run_classifier.py's top-level head
))
# leaf -> (HF leaf, transpose?)
_LEAVES = {
    "kernel": ("weight", True), "bias": ("bias", False), "gamma": ("weight", False), "beta": ("bias", False),
    "weights": ("weight", False), "<embedding>": ("weight", False), "<bias>": ("bias", False),
}
# HF names that share a tensor with another one in transformers' models.
_ALIASES = {"cls.predictions.bias": ("cls.predictions.decoder.bias",),
            "bert.embeddings.word_embeddings.weight": ("cls.predictions.decoder.weight",)}


class ConversionError(TFCheckpointError):
    """The checkpoint does not fit the model (shape mismatch, missing weight, bad output path)."""


class OutputNotEmptyError(ConversionError, RequestError):
    """The output folder holds files and ``overwrite`` is not set: a :class:`ConversionError`
    (exit code 1) of the request field ``overwrite``."""

    exit_code = FAILURE


@dataclass
class ConversionReport:
    """What happened to each checkpoint tensor during a conversion."""

    head: str
    loaded: Dict[str, str] = field(default_factory=dict)  # TF name -> model parameter name
    skipped: List[str] = field(default_factory=list)  # optimizer / bookkeeping state
    unmapped: List[str] = field(default_factory=list)  # not a weight of this model


# ------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------


def _strip_tf2_suffix(name: str) -> str:
    return name[: -len(TF2_SUFFIX)] if name.endswith(TF2_SUFFIX) else name


def is_training_state(name: str) -> bool:
    """True for optimizer slots, step counters and TF2 object-graph bookkeeping."""
    return any(part in TRAINING_STATE_COMPONENTS for part in name.split("/"))


def tf_to_hf_name(name: str) -> Optional[Tuple[str, bool]]:
    """``(Hugging Face name, transpose?)`` for a Google BERT variable, or ``None`` if unknown."""
    path = _strip_tf2_suffix(name)
    for pattern, replacement in _RULES:
        match = pattern.fullmatch(path)
        if match:
            module, leaf = match.expand(replacement).rsplit("/", 1)
            module = re.sub(r"layer\.0*(\d)", r"layer.\1", module).replace("/", ".")
            hf_leaf, transpose = _LEAVES[leaf]
            return f"{module}.{hf_leaf}", transpose
    return None


@dataclass(frozen=True)
class _Plan:
    mapping: Dict[str, Tuple[str, bool]]  # TF name -> (HF name, transpose)
    skipped: List[str]
    unmapped: List[str]


def plan_conversion(names: Iterable[str]) -> _Plan:
    """Sort checkpoint names into mapped weights, skipped training state and unknown names."""
    mapping, skipped, unmapped = {}, [], []
    for name in names:
        if is_training_state(name):
            skipped.append(name)
        elif (target := tf_to_hf_name(name)) is not None:
            mapping[name] = target
        else:
            unmapped.append(name)
    return _Plan(mapping, skipped, unmapped)


def detect_head(hf_names: Iterable[str]) -> str:
    """Pick the model head the checkpoint's weights call for."""
    names = set(hf_names)
    if any(n.startswith("classifier.") for n in names):
        return "classifier"
    if any(n.startswith("cls.seq_relationship.") for n in names):
        return "pretraining"
    if any(n.startswith("cls.predictions.") for n in names):
        return "masked_lm"
    return "none"


# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------


def _build_model(config_path: str, head: str, num_labels: Optional[int]) -> torch.nn.Module:
    from ..models.bert import BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel
    from ..models.config import BertConfig

    config = BertConfig.from_json_file(config_path)
    if head == "classifier":
        return BertForSequenceClassification(config, num_labels=num_labels)
    return {"pretraining": BertForPreTraining, "masked_lm": BertForMaskedLM, "none": BertModel}[head](config)


def _target_keys(hf_name: str, targets: Dict[str, torch.Tensor]) -> List[str]:
    """Model state-dict keys that receive ``hf_name`` (a bare ``BertModel`` has no ``bert.`` prefix)."""
    keys = []
    for candidate in (hf_name, *_ALIASES.get(hf_name, ())):
        if candidate.startswith("bert.") and candidate not in targets:
            candidate = candidate[len("bert."):]
        if candidate in targets:
            keys.append(candidate)
    return keys


def _num_labels(reader: TFCheckpointReader, plan: _Plan) -> Optional[int]:
    for tf_name, (hf_name, _) in plan.mapping.items():
        if hf_name == "classifier.weight":
            shape = reader.variables()[tf_name][1]
            if len(shape) != 2 or shape[0] < 1:
                raise ConversionError(f"{reader.index_path}: {tf_name!r} has shape {list(shape)}, "
                                      "expected [num_labels, hidden_size]")
            return shape[0]
    return None


def _check_fits(reader: TFCheckpointReader, tf_name: str, transpose: bool, key: str, target: torch.Tensor) -> None:
    """Compare the index's dtype and shape with the model parameter before reading any data."""
    dtype, shape = reader.variables()[tf_name]
    if dtype not in ("float32", "float16", "bfloat16", "float64"):
        raise ConversionError(f"{reader.index_path}: {tf_name!r} has dtype {dtype}, expected a float weight")
    if transpose and len(shape) != 2:
        raise ConversionError(f"{reader.index_path}: kernel {tf_name!r} has shape {list(shape)}, expected 2-D")
    shape = shape[::-1] if transpose else shape
    if tuple(shape) != tuple(target.shape):
        raise ConversionError(
            f"{reader.index_path}: tensor {tf_name!r} has shape {list(shape)}"
            f"{' after transposing' if transpose else ''} but model parameter {key!r} "
            f"has shape {list(target.shape)}; does the config match the checkpoint?")


def _plan_loads(model: torch.nn.Module, reader: TFCheckpointReader, plan: _Plan,
                report: ConversionReport) -> List[Tuple[str, List[str], bool]]:
    """``(TF name, model keys, transpose?)`` of every tensor to load, checked against the model
    from the index alone (dtype, shape, one tensor per parameter) before any data is read."""
    targets = model.state_dict(keep_vars=True)
    owner: Dict[int, str] = {}
    loads = []
    for tf_name, (hf_name, transpose) in plan.mapping.items():
        keys = _target_keys(hf_name, targets)
        if not keys:
            report.unmapped.append(tf_name)
            continue
        for key in keys:
            _check_fits(reader, tf_name, transpose, key, targets[key])
            if owner.get(id(targets[key]), tf_name) != tf_name:
                raise ConversionError(f"{reader.index_path}: both {owner[id(targets[key])]!r} and {tf_name!r} "
                                      f"map to model parameter {key!r}")
            owner[id(targets[key])] = tf_name
        loads.append((tf_name, keys, transpose))
    missing = [name for name, p in model.named_parameters() if id(p) not in owner]
    if missing:
        raise ConversionError(f"{reader.index_path}: checkpoint has no value for model parameter(s) "
                              f"{', '.join(missing)} (head={report.head!r})")
    return loads


def _fill(model: torch.nn.Module, reader: TFCheckpointReader, loads: List[Tuple[str, List[str], bool]],
          report: ConversionReport) -> None:
    """Copy every planned tensor into the model, one at a time (each read checks its crc32c)."""
    targets = model.state_dict(keep_vars=True)
    for tf_name, keys, transpose in loads:
        array = reader.get_tensor(tf_name)
        value = torch.from_numpy(array.T if transpose else array)
        with torch.no_grad():
            for key in keys:
                targets[key].copy_(value)  # casts float16/bfloat16/float64 to the parameter's dtype
        report.loaded[tf_name] = keys[0]
        del array, value


# ------------------------------------------------------------------------------------------
# Integrity of the whole checkpoint
# ------------------------------------------------------------------------------------------

ACCEPT_FIELD = "accept_damaged_skipped"  # the request field (and parameter) that accepts damage in skipped tensors
ACCEPTED = "damage in tensors that are not converted accepted"  # the warnings' words for it
_LISTED = 5  # damaged tensors named in one message


class DamagedSkippedError(CheckpointFormatError, RequestError):
    """Tensors that convert skips (optimizer slots, global_step, unused heads) are cut off or
    damaged and ``accept_damaged_skipped`` is not set: a :class:`CheckpointFormatError` (exit code 1)
    of that request field."""

    exit_code = FAILURE


class DamagedSkippedChecksumError(ChecksumError, RequestError):
    """As :class:`DamagedSkippedError`, when every damage is a crc32c mismatch: a :class:`ChecksumError`."""

    exit_code = FAILURE


def format_names(names: Sequence[str]) -> str:
    """Up to five names, quoted, then how many more (for messages)."""
    shown = ", ".join(repr(n) for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _accept_hint() -> str:
    return "no weight to convert is affected: set it to convert anyway"


def _check_shards(reader: TFCheckpointReader, converted: set, accept: bool) -> List[str]:
    """Compare every data shard's size with what the index needs. Returns the names of the
    tensors lost to an accepted truncation; raises otherwise."""
    lost_skipped: List[str] = []
    for shortfall in reader.check_shards():
        lost_weights = [n for n in shortfall.lost if n in converted]
        if lost_weights:
            raise CheckpointFormatError(f"{shortfall.describe()}; it loses converted weight(s) "
                                        f"{format_names(lost_weights)}")
        if not accept:
            raise DamagedSkippedError(ACCEPT_FIELD, f"{shortfall.describe()}; it loses tensor(s) that convert skips: "
                                                    f"{format_names(list(shortfall.lost))} (the file is incomplete or "
                                                    f"damaged); {_accept_hint()}")
        warnings.warn(f"{shortfall.describe()}; converting anyway ({ACCEPTED}): lost tensor(s) that are not converted: "
                      f"{format_names(list(shortfall.lost))}", stacklevel=3)
        lost_skipped.extend(shortfall.lost)
    return lost_skipped


def _verify_skipped(reader: TFCheckpointReader, names: List[str], accept: bool) -> None:
    """Check the crc32c of the tensors that are not converted (optimizer slots, global_step...)."""
    checkable = [n for n in names if not reader.info(n).sliced]
    unchecked = len(names) - len(checkable)
    if unchecked:
        warnings.warn(f"{reader.index_path}: {unchecked} partitioned (sliced) tensor(s) that are not converted "
                      "were not checked", stacklevel=3)
    damaged = reader.verify(checkable)
    if not damaged:
        return
    details = "; ".join(str(error) for error in list(damaged.values())[:_LISTED])
    if len(damaged) > _LISTED:
        details += f"; and {len(damaged) - _LISTED} more: {format_names(list(damaged)[_LISTED:])}"
    count = f"{len(damaged)} tensor{'s' if len(damaged) > 1 else ''}"
    if accept:
        warnings.warn(f"{reader.prefix}: converting anyway ({ACCEPTED}) although {count} that convert skips "
                      f"{'are' if len(damaged) > 1 else 'is'} damaged: {details}", stacklevel=3)
        return
    kind = DamagedSkippedChecksumError if all(isinstance(e, ChecksumError) for e in damaged.values()) \
        else DamagedSkippedError
    raise kind(ACCEPT_FIELD, f"checkpoint {reader.prefix} is damaged in {count} that convert skips: {details}; "
                             f"{_accept_hint()}")


def convert_tf_to_model(prefix: str | os.PathLike, config_path: str | os.PathLike,
                        head: str = "auto", accept_damaged_skipped: bool = False
                        ) -> Tuple[torch.nn.Module, ConversionReport]:
    """Build our model from ``bert_config.json`` and fill it from a TF checkpoint.

    Unmapped checkpoint tensors are warned about and listed in the report; a model parameter the
    checkpoint does not provide, or any shape mismatch, raises :class:`ConversionError`.

    The whole checkpoint is checked, not only the converted tensors: every data shard's size
    against the index, and the crc32c of every tensor. Damage in a converted tensor raises
    :class:`ChecksumError` / :class:`CheckpointFormatError`; damage confined to tensors that are not
    converted (optimizer slots, ``global_step``, unused heads) raises too, unless
    ``accept_damaged_skipped`` is true, in which case it is warned about.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    reader = TFCheckpointReader(prefix)
    plan = plan_conversion(reader.variables())
    if not plan.mapping:
        raise ConversionError(f"{reader.index_path}: no Google BERT variables found "
                              f"({len(plan.unmapped)} unknown, {len(plan.skipped)} optimizer tensors)")
    if head == "auto":
        head = detect_head(hf for hf, _ in plan.mapping.values())
    report = ConversionReport(head=head, skipped=list(plan.skipped), unmapped=list(plan.unmapped))
    model = _build_model(os.fspath(config_path), head, _num_labels(reader, plan))
    loads = _plan_loads(model, reader, plan, report)
    body = [name for name in report.unmapped if name.startswith("bert/")]
    if body:  # a weight of the BERT body with no place in the model: the config is not the checkpoint's
        raise ConversionError(
            f"{os.fspath(config_path)}: the model this config describes has no place for {len(body)} weight(s) of "
            f"the checkpoint {reader.index_path} (first: {body[0]}; the config's num_hidden_layers is "
            f"{model.config.num_hidden_layers}); nothing was written")
    converted = {tf_name for tf_name, _, _ in loads}
    lost = set(_check_shards(reader, converted, accept_damaged_skipped))
    _fill(model, reader, loads, report)
    _verify_skipped(reader, [n for n in reader.variables() if n not in converted and n not in lost],
                    accept_damaged_skipped)
    model.eval()
    if report.unmapped:
        warnings.warn(f"{reader.index_path}: {len(report.unmapped)} tensor(s) not used by the "
                      f"{type(model).__name__}: {', '.join(report.unmapped)}", stacklevel=2)
    return model, report


# ------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------


def _check_vocab(vocab_path: str, vocab_size: int) -> None:
    with open(vocab_path, encoding="utf-8") as handle:
        lines = sum(1 for _ in handle)
    if lines != vocab_size:
        warnings.warn(f"{vocab_path} has {lines} lines but the config's vocab_size is {vocab_size}", stacklevel=3)


def _prepare_output(out_dir: str, overwrite: bool) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConversionError(f"{out_dir}: output path exists and is not a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise OutputNotEmptyError("overwrite", f"not set, and the output folder {out_dir} exists and is not empty "
                                              "(set it to replace the folder)")


def _refuse_overwriting_inputs(prefix: str | os.PathLike, config_path: str | os.PathLike,
                               vocab_path: Optional[str | os.PathLike], out_dir: str | os.PathLike) -> None:
    """The output folder is replaced as a whole: it must hold none of the files the conversion
    reads (the checkpoint's files, the config, the vocabulary; by identity)."""
    import glob

    prefix = os.fspath(prefix)
    checkpoint = [os.path.join(prefix, name) for name in os.listdir(prefix)] if os.path.isdir(prefix) else \
        [prefix, *glob.glob(glob.escape(prefix) + ".*")]
    guard = Guard.for_run([("the config file", config_path), ("the vocabulary", vocab_path),
                           *(("a file of the TF checkpoint", path) for path in checkpoint)])
    guard.check_folder("out", out_dir, replaced=True)


def _make_readable(path: str) -> None:
    """Give temporary files/folders (created private, mode 0600/0700) the usual 0644/0755 modes."""
    os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
    if os.path.isdir(path):
        for name in os.listdir(path):
            _make_readable(os.path.join(path, name))


def convert_tf_checkpoint(prefix: str | os.PathLike, config_path: str | os.PathLike,
                          out_dir: str | os.PathLike, vocab_path: Optional[str | os.PathLike] = None,
                          head: str = "auto", overwrite: bool = False,
                          accept_damaged_skipped: bool = False) -> str:
    """Convert a TF checkpoint into a Hugging Face folder (config.json, model.safetensors, vocab.txt).

    The folder is written under a temporary sibling name and renamed into place only when
    complete; on any failure nothing is left at ``out_dir``. Returns ``out_dir``. See
    :func:`convert_tf_to_model` for the integrity checks and ``accept_damaged_skipped``.
    """
    _refuse_overwriting_inputs(prefix, config_path, vocab_path, out_dir)
    out_dir = os.path.abspath(os.fspath(out_dir))
    _prepare_output(out_dir, overwrite)
    if vocab_path is not None and not os.path.isfile(vocab_path):
        raise ConversionError(f"{vocab_path}: vocabulary file not found")
    with output_lock(out_dir):  # one writer per output folder, from the first step
        model, _ = convert_tf_to_model(prefix, config_path, head, accept_damaged_skipped)
        if vocab_path is not None:
            _check_vocab(os.fspath(vocab_path), model.config.vocab_size)
        _write_model_folder(model, vocab_path, out_dir)
    return out_dir


def _write_model_folder(model: torch.nn.Module, vocab_path: Optional[str | os.PathLike], out_dir: str) -> None:
    """The converted model (and the vocabulary) as a Hugging Face folder, replacing ``out_dir`` atomically."""
    with atomic_directory(out_dir) as temporary:
        model.save_pretrained(temporary)
        if vocab_path is not None:
            atomic_write(os.path.join(temporary, "vocab.txt"), lambda copy: shutil.copyfile(vocab_path, copy))
        _make_readable(temporary)


def save_weights_file(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """Write only the weights, atomically: ``.safetensors`` (preferred) or ``.bin`` (``torch.save``)."""
    path = os.fspath(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.endswith(".safetensors"):
        write_tensors(path, state, metadata={"format": "pt"})
    elif path.endswith(".bin"):
        write_torch(path, state)
    else:
        raise ConversionError(f"{path}: weights file must end in .safetensors or .bin")
    _make_readable(path)
    return path
