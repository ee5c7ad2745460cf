"""Checkpoint I/O: Hugging Face folders (safetensors first), BERT-LRP state dicts, strict checks.

Loading never runs code: safetensors, or ``torch.load(weights_only=True)`` for ``.bin`` files.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file

from .._io import atomic_write
from ..errors import BertLrpError
from .config import TRANSFORMERS_DEFAULTS, as_config
from .tuned import read_tuned_composite, write_tuned_composite

logger = logging.getLogger("bert_lrp")
# where transformers reports loading (its tests and users read a size mismatch there); written to
# only when transformers has created it (transformers imported), never imported from here
TRANSFORMERS_LOADING_LOGGER = "transformers.modeling_utils"

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# tensors of task heads (and poolers): a checkpoint may lack them or hold other heads' ones
HEAD_PREFIXES = ("classifier.", "cls.", "pooler.", "lm_head.", "pre_classifier.", "vocab_transform.",
                 "vocab_layer_norm.", "vocab_projector.", "generator_predictions.", "generator_lm_head.",
                 "discriminator_predictions.", "qa_outputs.")
BASE_PREFIXES = ("bert", "roberta", "distilbert", "electra")  # base_model_prefix of each family
# buffers and tied copies of the word embeddings, never loaded
IGNORED_KEYS = ("position_ids", "token_type_ids", "cls.predictions.decoder.weight", "lm_head.decoder.weight",
                "vocab_projector.weight", "generator_lm_head.weight")


class CheckpointError(BertLrpError, RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the model."""


@dataclass
class LoadingInfo:
    """What happened to each tensor when a checkpoint was loaded into a model."""

    missing_keys: List[str] = field(default_factory=list)
    unexpected_keys: List[str] = field(default_factory=list)
    mismatched_keys: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    newly_initialized: List[str] = field(default_factory=list)
    unused_head_keys: List[str] = field(default_factory=list)

    # transformers' loading-info dict: missing_keys, unexpected_keys, mismatched_keys, error_msgs
    DICT_KEYS = ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")

    def as_dict(self) -> Dict[str, Any]:
        """transformers' ``output_loading_info`` dict (sets of keys, as transformers 5): missing keys include the heads newly
        initialised, unexpected keys the unused head tensors, mismatched keys ``(key, checkpoint
        shape, model shape)``."""
        return {"missing_keys": set(self.missing_keys + self.newly_initialized),
                "unexpected_keys": set(self.unexpected_keys + self.unused_head_keys),
                "mismatched_keys": set(self.mismatched_keys), "error_msgs": []}

    def __getitem__(self, key: str) -> Any:
        if key not in self.DICT_KEYS:
            raise KeyError(key)
        return self.as_dict()[key]

    def keys(self) -> Tuple[str, ...]:
        return self.DICT_KEYS

    def problems(self) -> List[str]:
        lines = [f"missing tensor {k}" for k in self.missing_keys]
        lines += [f"unexpected tensor {k}" for k in self.unexpected_keys]
        lines += [f"tensor {k} has shape {list(got)} in the checkpoint but {list(want)} in the model"
                  for k, got, want in self.mismatched_keys]
        return lines


def read_state_dict(path: str | os.PathLike) -> Dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.bin``/``.pt`` weights file (the latter with ``weights_only=True``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if path.endswith(".safetensors"):
            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt or truncated file
        raise CheckpointError(f"cannot read weights file {path}: {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def find_weights(directory: str | os.PathLike) -> str:
    for name in WEIGHT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise CheckpointError(f"no weights in {directory}: expected one of {', '.join(WEIGHT_FILES)}")


def normalize_keys(state: Dict[str, torch.Tensor], model_keys: set, prefix: str) -> Dict[str, torch.Tensor]:
    """Map foreign names onto ours: BERT-LRP's ``gamma``/``beta``, ``module.`` (DataParallel),
    a missing or extra ``bert.`` prefix, the tied decoder's bias. A key the model has is never
    renamed or dropped (an untied decoder has its own ``decoder.weight`` / ``decoder.bias``)."""
    out: Dict[str, torch.Tensor] = {}
    has_prefix = any(k.startswith(prefix + ".") for k in model_keys) if prefix else False
    for key, tensor in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.endswith(".gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith(".beta"):
            key = key[: -len("beta")] + "bias"
        if key == "cls.predictions.decoder.bias" and key not in model_keys:
            key = "cls.predictions.bias"
        elif key == "lm_head.decoder.bias" and key not in model_keys:  # tied to lm_head.bias in RoBERTa
            key = "lm_head.bias"
        first = key.split(".", 1)[0]
        if has_prefix and key not in model_keys and prefix + "." + key in model_keys:
            key = prefix + "." + key  # an encoder's checkpoint into a task model
        elif not has_prefix and first in BASE_PREFIXES and key[len(first) + 1:] in model_keys:
            key = key[len(first) + 1:]  # a task model's checkpoint into an encoder
        if key.endswith(IGNORED_KEYS) and key not in model_keys:
            continue
        out.setdefault(key, tensor)
    return out


def load_into(model: torch.nn.Module, state: Dict[str, torch.Tensor], strict: bool = True,
              source: str = "checkpoint", ignore_mismatched_sizes: bool = False) -> LoadingInfo:
    """Copy ``state`` into ``model``; heads the checkpoint lacks keep their fresh initialisation.

    Strict mode raises :class:`CheckpointError` listing every missing (non-head), unexpected
    (non-head) or mis-shaped tensor; ``strict=False`` logs them and loads the rest.
    ``ignore_mismatched_sizes=True`` (transformers' option: a new classifier on a checkpoint with
    another label count) keeps the fresh initialisation of mis-shaped tensors, reported in
    ``mismatched_keys``, without raising.
    """
    own = model.state_dict()
    state = normalize_keys(state, set(own), getattr(model, "base_model_prefix", ""))
    info = LoadingInfo()
    def is_head(key: str) -> bool:
        return key.startswith(HEAD_PREFIXES) or key.split(".", 1)[-1].startswith("pooler.")

    for key in own:
        if key not in state:
            (info.newly_initialized if is_head(key) else info.missing_keys).append(key)
    for key, tensor in state.items():
        if key not in own:
            (info.unused_head_keys if is_head(key) else info.unexpected_keys).append(key)
        elif tuple(tensor.shape) != tuple(own[key].shape):
            info.mismatched_keys.append((key, tuple(tensor.shape), tuple(own[key].shape)))
    problems = info.problems()
    if ignore_mismatched_sizes:
        problems = [p for p in problems if not p.startswith("tensor ")]
        for key, got, want in info.mismatched_keys:
            report_size_mismatch(source, key, got, want)
    if problems and strict:
        raise CheckpointError(f"{source} does not fit {type(model).__name__} ({len(problems)} problem(s)):\n  "
                              + "\n  ".join(problems) + "\n(pass strict=False to load what fits)")
    bad = {k for k, _, _ in info.mismatched_keys}
    usable = {k: v for k, v in state.items() if k in own and k not in bad}
    with torch.no_grad():
        for key, tensor in usable.items():
            own[key].copy_(tensor.to(own[key].dtype))
    for line in problems:
        logger.warning("%s: %s", source, line)
    if info.newly_initialized:
        logger.warning("%s has no weights for %s; they are newly initialised (train them before use)",
                       source, ", ".join(info.newly_initialized))
    if info.unused_head_keys:
        logger.info("%s: head tensors not used by %s: %s", source, type(model).__name__,
                    ", ".join(info.unused_head_keys))
    return info


def report_size_mismatch(source: str, key: str, checkpoint_shape: Tuple[int, ...],
                         model_shape: Tuple[int, ...]) -> None:
    """Warn that ``key`` was initialised afresh (``ignore_mismatched_sizes=True``), in transformers'
    words, on the ``bert_lrp`` logger and, when transformers is imported, on its loading logger too."""
    message = (f"{source}: {key}: Reinit due to size mismatch - ckpt: {list(checkpoint_shape)} vs model: "
               f"{list(model_shape)} (ignore_mismatched_sizes=True: newly initialised)")
    logger.warning(message)
    if TRANSFORMERS_LOADING_LOGGER in logging.Logger.manager.loggerDict:
        logging.getLogger(TRANSFORMERS_LOADING_LOGGER).warning(message)


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for our models."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Optional[str | os.PathLike], *args: Any,
                        strict: bool = True, output_loading_info: bool = False, config=None, init_lrp: bool = False,
                        ignore_mismatched_sizes: bool = False, dtype: Any = None, torch_dtype: Any = None,
                        attn_implementation: Optional[str] = None,
                        state_dict: Optional[Dict[str, torch.Tensor]] = None, **config_overrides: Any):
        """Load a Hugging Face-style folder (``config.json`` + ``model.safetensors`` or
        ``pytorch_model.bin``), or a single weights file next to which ``config.json`` lies.

        ``config_overrides`` are config fields (``num_labels=3``, ``id2label=...``) or transformers'
        config keys (``output_hidden_states=True``); any other keyword raises a TypeError naming it.
        ``config`` may be ours or transformers'. As transformers: ``ignore_mismatched_sizes=True``
        initialises mis-shaped tensors afresh (a head of another label count);
        ``dtype`` (or ``torch_dtype``; a ``torch.dtype``, its name, or ``"auto"``: the checkpoint's)
        casts the model; ``attn_implementation`` is ``"sdpa"`` or ``"eager"``;
        ``output_loading_info=True`` also returns a :class:`LoadingInfo`, which reads as
        transformers' dict (``info["missing_keys"]``, ...); ``state_dict=`` loads those tensors
        instead of the folder's weights file, and ``from_pretrained(None, config=config,
        state_dict=tensors)`` needs no folder at all (an in-memory checkpoint). ``init_lrp=True``
        (``BertForSequenceClassification`` only) gives the original BERT-LRP calls
        (``backward_lrp``, ...) on the loaded weights."""
        if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
            raise TypeError(f"{cls.__name__}.from_pretrained(): dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree")
        dtype = dtype if dtype is not None else torch_dtype
        allowed = cls.config_class.override_names() | set(TRANSFORMERS_DEFAULTS)
        unknown = sorted(set(config_overrides) - allowed)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained() got an unexpected keyword argument {unknown[0]!r} "
                            f"(not an argument and not a field of {cls.config_class.__name__})")
        if init_lrp and not getattr(cls, "supports_init_lrp", False):
            raise ValueError(f"init_lrp=True is the original BERT-LRP's flag for BertForSequenceClassification, "
                             f"not {cls.__name__}")
        if torch.empty(0).device.type == "meta":
            raise CheckpointError("You are using `from_pretrained` with a meta device context manager: weights cannot "
                                  "be loaded into meta tensors; call it outside `with torch.device('meta')`")
        weights, folder = _locate_checkpoint(cls, pretrained_model_name_or_path, config, state_dict)
        if config is None:
            config = cls.config_class.from_pretrained(folder, **config_overrides)
        else:
            config = as_config(config)
            if config_overrides:
                config = config.with_overrides(**config_overrides)
        if attn_implementation is not None:
            config = config.copy(_attn_implementation=attn_implementation)
        model = cls(config, *args, init_lrp=True) if init_lrp else cls(config, *args)
        state = read_state_dict(weights) if state_dict is None else state_dict
        source = weights or "state_dict"
        info = load_into(model, state, strict=strict, source=source, ignore_mismatched_sizes=ignore_mismatched_sizes)
        # lrp_composite.json: --rule tuned
        model.tuned_composite = read_tuned_composite(folder) if folder is not None else None
        model.name_or_path = os.fspath(pretrained_model_name_or_path or "")
        target = _resolve_dtype(dtype, state, source)
        if target is not None:
            model.to(target)
            model.config.dtype = target
        model.eval()
        return (model, info) if output_loading_info else model

    def save_pretrained(self, directory: str | os.PathLike, dtype: Optional[torch.dtype] = None, *,
                        safe_serialization: bool = True, state_dict: Optional[Dict[str, torch.Tensor]] = None,
                        is_main_process: bool = True, max_shard_size: Any = None,
                        push_to_hub: bool = False) -> None:
        """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``, and
        the tuned LRP composite (``lrp_composite.json``) when the model has one.

        ``dtype`` (e.g. ``torch.float16``) stores the weights in a smaller type; loading casts back.
        transformers' options: ``safe_serialization=False`` writes ``pytorch_model.bin`` instead,
        ``state_dict`` saves those tensors instead of the model's, ``is_main_process=False``
        writes nothing (the other ranks of a distributed run); ``max_shard_size`` is accepted
        and ignored (one file); ``push_to_hub=True`` is refused (no network).
        """
        if push_to_hub:
            raise CheckpointError("save_pretrained(push_to_hub=True) is not supported: bert-lrp never uploads; "
                                  "upload the folder with huggingface_hub")
        if not is_main_process:
            return
        os.makedirs(directory, exist_ok=True)
        config = self.config.copy(architectures=[type(self).__name__])
        config.save_pretrained(directory)
        source = self.state_dict() if state_dict is None else state_dict
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous()
                 for k, v in source.items()}
        if safe_serialization:
            atomic_write(os.path.join(directory, "model.safetensors"),
                         lambda path: save_file(state, path, metadata={"format": "pt"}))
        else:
            atomic_write(os.path.join(directory, "pytorch_model.bin"), lambda path: torch.save(state, path))
        stale = os.path.join(directory, "pytorch_model.bin" if safe_serialization else "model.safetensors")
        if os.path.exists(stale):  # an older save in the other format would be read first / instead
            os.remove(stale)
        if getattr(self, "tuned_composite", None) is not None:
            write_tuned_composite(directory, self.tuned_composite)


def _locate_checkpoint(cls: type, name_or_path: Optional[str | os.PathLike], config: Any,
                       state_dict: Optional[Dict[str, torch.Tensor]]) -> Tuple[Optional[str], Optional[str]]:
    """``(weights file, folder)`` of ``from_pretrained``'s first argument: a folder (its weights
    file; None when ``state_dict`` is given), a weights file and the folder it lies in, or a hub id.
    ``None`` is an in-memory checkpoint: ``(None, None)``, which needs ``config`` and ``state_dict``."""
    if name_or_path is None:
        if config is None or state_dict is None:
            raise CheckpointError(f"{cls.__name__}.from_pretrained(None) loads an in-memory checkpoint: give both "
                                  "config= and state_dict= (or a model folder)")
        return None, None
    directory = resolve_pretrained(name_or_path)
    if os.path.isfile(directory):
        return directory, os.path.dirname(directory) or "."
    if os.path.isdir(directory):
        return (find_weights(directory) if state_dict is None else None), directory
    raise CheckpointError(f"checkpoint not found: {directory}")


def _resolve_dtype(dtype: Any, state: Dict[str, torch.Tensor], source: str) -> Optional[torch.dtype]:
    """``dtype=`` of ``from_pretrained``: None (keep float32), a ``torch.dtype``, its name
    (``"float16"``), or ``"auto"`` (the checkpoint's floating type)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        floating = [t.dtype for t in state.values() if t.is_floating_point()]
        return floating[0] if floating else None
    resolved = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(resolved, torch.dtype):
        raise TypeError(f"from_pretrained(): dtype {dtype!r} is not a torch dtype (e.g. torch.float16, "
                        f"'bfloat16', 'auto') for {source}")
    return resolved


def resolve_pretrained(name_or_path: str | os.PathLike) -> str:
    """A local file or folder as is; otherwise a hub id (``org/name``) from the Hugging Face cache
    or, if allowed, downloaded (see :mod:`bert_lrp.models.hub`)."""
    path = os.fspath(name_or_path)
    if os.path.exists(path):
        return path
    from .hub import resolve_hub_id, looks_like_hub_id

    if looks_like_hub_id(path):
        return resolve_hub_id(path)
    raise CheckpointError(f"checkpoint not found: {path}")
