"""A model's tuned LRP composite: ``lrp_composite.json`` next to its weights (written by ``bert-lrp
tune-lrp``), read when the model is loaded and used by ``--rule tuned`` / ``lrp:tuned``.

The file also names the texts the composite was tuned on, so that an evaluation can refuse to
score the composite on its own tuning data: the first 16 hex digits of each text's sha256
(``text_keys``) and, from version 3, of its whitespace-normalised form and of the tokenizer's ids
of it (``normalised_keys``: ``FILM .`` and ``film.`` are one text to an uncased tokenizer).

Guards (issue 30). A damaged file does not stop the model from loading: every other method works,
and only ``lrp:tuned`` is refused, naming the file and the field. The composite is refused when the
weights it was tuned on are not the model's: the file records the weights' content digest
(``tuning.weights_sha256``, :func:`weights_digest`; files of earlier versions: the weights file's
fingerprint ``tuning.model_sha256``), checked against the model when the composite is used, and
``save_pretrained`` of changed weights *marks* the copy it writes (``tuning.weights_changed``: both
digests) rather than dropping it, so that the search record stays with the folder while
``lrp:tuned`` names both digests and refuses.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, Optional, Sequence

import torch

from ..output import atomic_write_text
from ..errors import BertLrpError
from ..rules.composites import Composite

COMPOSITE_FILE = "lrp_composite.json"
FORMAT = "bert-lrp tuned composite"
VERSION = 3  # 3: normalised text keys, the weights' content digest; 2: rules as objects; 1: flat parameters
READABLE_VERSIONS = (1, 2, 3)
Tokenize = Callable[[str], Sequence[int]]  # a text -> the tokenizer's ids of it (the road's encoding)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # as models.checkpoint reads them (no import: a circle)


class TunedCompositeError(BertLrpError, ValueError):
    """A damaged ``lrp_composite.json``, or one tuned on other weights (the message names the file
    and the field, or both digests)."""


def text_key(text: str) -> str:
    """What identifies a text among the tuning texts: its sha256 (16 hex digits), spaces trimmed."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


def normalised_keys(text: str, tokenize: Optional[Tokenize] = None) -> FrozenSet[str]:
    """The keys of ``text`` that survive spacing and, with ``tokenize``, anything the tokenizer
    ignores (case for an uncased one, the space before punctuation): the key of the text with its
    runs of whitespace made one space, and the key of the tokenizer's ids."""
    keys = {text_key(" ".join(text.split()))}
    if tokenize is not None:
        ids = ",".join(str(int(i)) for i in tokenize(text))
        keys.add("ids:" + hashlib.sha256(ids.encode("ascii")).hexdigest()[:16])
    return frozenset(keys)


def weights_digest(state: Dict[str, torch.Tensor]) -> str:
    """The first 16 hex digits of the SHA-256 of a state dict's tensors (name, shape and float32
    bytes, in name order): equal for equal numbers, whichever file format holds them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        values = tensor.detach().cpu()
        values = (values.float() if values.is_floating_point() else values).contiguous()
        digest.update(f"{name}|{tuple(values.shape)}|".encode("utf-8"))
        digest.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TunedComposite:
    """``composite`` (named ``tuned``; None when the file is damaged, ``error`` says why), the keys
    of the texts it was tuned on, and the whole record (``tuning``: data, scores, search log) as the
    file holds it."""

    composite: Optional[Composite]
    tuning_texts: FrozenSet[str] = frozenset()
    record: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    path: Optional[str] = None
    normalised_texts: FrozenSet[str] = frozenset()
    error: Optional[str] = field(default=None, compare=False)
    _checked: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def overlap(self, texts: Iterable[str], tokenize: Optional[Tokenize] = None) -> int:
        """How many of ``texts`` were tuning texts: the same text, or the same after normalising
        whitespace, or the same ids to ``tokenize`` (when the file records those keys)."""
        count = 0
        for text in texts:
            if text_key(text) in self.tuning_texts or normalised_keys(text, tokenize) & self.normalised_texts:
                count += 1
        return count

    @property
    def tuning(self) -> Dict[str, Any]:
        tuning = self.record.get("tuning")
        return tuning if isinstance(tuning, dict) else {}

    def usable(self, model: Optional[torch.nn.Module] = None) -> Composite:
        """The composite, if it can explain ``model``: raises :class:`TunedCompositeError` when the
        file was damaged (naming the file and field), marked by ``save_pretrained`` of other
        weights, or tuned on weights that are not ``model``'s (naming both digests)."""
        where = self.path or COMPOSITE_FILE
        if self.error is not None or self.composite is None:
            raise TunedCompositeError(self.error or f"{where}: no composite")
        changed = self.tuning.get("weights_changed")
        if isinstance(changed, dict):
            raise TunedCompositeError(
                f"{where}: field 'tuning.weights_changed': tuned on weights {changed.get('tuned_on')}, saved with "
                f"weights {changed.get('saved')}; tune it again for these weights (bert-lrp tune-lrp)")
        expected = self.tuning.get("weights_sha256")
        if model is not None and isinstance(expected, str):
            actual = self._model_digest(model)
            if actual != expected:
                raise TunedCompositeError(
                    f"{where}: field 'tuning.weights_sha256': tuned on weights {expected}, the model's are {actual}; "
                    "tune it again for these weights (bert-lrp tune-lrp)")
        elif isinstance(self.tuning.get("model_sha256"), str) and self.path is not None:
            actual = self._file_digest()
            if actual is not None and actual != self.tuning["model_sha256"]:
                raise TunedCompositeError(
                    f"{where}: field 'tuning.model_sha256': tuned on the weights file {self.tuning['model_sha256']}, "
                    f"the folder's is {actual}; tune it again for these weights (bert-lrp tune-lrp)")
        return self.composite

    def _model_digest(self, model: torch.nn.Module) -> str:
        """:func:`weights_digest` of ``model``, computed again only when a tensor changed."""
        state = model.state_dict()
        stamp = tuple((name, id(t), t.data_ptr(), t._version) for name, t in sorted(state.items()))
        if self._checked.get("stamp") != stamp:
            self._checked.update(stamp=stamp, digest=weights_digest(state))
        return self._checked["digest"]

    def _file_digest(self) -> Optional[str]:
        from ..output import file_fingerprint

        weights = _weights_file(os.path.dirname(self.path) or ".")
        if weights is None:  # no weights file beside it: nothing to compare
            return None
        stamp = (weights, os.stat(weights).st_mtime_ns, os.stat(weights).st_size)
        if self._checked.get("file_stamp") != stamp:
            self._checked.update(file_stamp=stamp, file_digest=file_fingerprint(weights))
        return self._checked["file_digest"]

    def to_json(self) -> str:
        if self.composite is None:
            raise TunedCompositeError(self.error or "a damaged tuned composite cannot be written")
        record = dict(self.record)
        record.update({"format": FORMAT, "version": VERSION, "composite": self.composite.to_dict()})
        record.setdefault("tuning", {})
        record["tuning"] = {**record["tuning"], "text_keys": sorted(self.tuning_texts),
                            "normalised_keys": sorted(self.normalised_texts)}
        return json.dumps(record, indent=1) + "\n"


def read_tuned_composite(folder: str | os.PathLike) -> Optional[TunedComposite]:
    """The tuned composite in ``folder`` (None when it has no ``lrp_composite.json``). A damaged
    file gives a TunedComposite without a composite whose ``error`` names the file and the field:
    the model still loads, and only ``lrp:tuned`` is refused."""
    path = os.path.join(folder, COMPOSITE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        return _read(path)
    except TunedCompositeError as error:
        return TunedComposite(None, path=path, error=str(error))


def _read(path: str) -> TunedComposite:
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TunedCompositeError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise TunedCompositeError(f"{path}: field 'format' must be {FORMAT!r}")
    version = record.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise TunedCompositeError(f"{path}: field 'version': {version!r} is not one of "
                                  f"{', '.join(map(str, READABLE_VERSIONS))} (written by a newer bert-lrp?)")
    try:
        composite = Composite.from_dict(record.get("composite"), "field 'composite'")
    except ValueError as error:
        raise TunedCompositeError(f"{path}: {error}") from None
    tuning = record.get("tuning") or {}
    if not isinstance(tuning, dict):
        raise TunedCompositeError(f"{path}: field 'tuning' must be an object")
    keys = {}
    for name in ("text_keys", "normalised_keys"):
        values = tuning.get(name, [])
        if not isinstance(values, list) or not all(isinstance(k, str) for k in values):
            raise TunedCompositeError(f"{path}: field 'tuning.{name}' must be a list of texts")
        keys[name] = frozenset(values)
    for name in ("weights_sha256", "model_sha256"):
        if name in tuning and not isinstance(tuning[name], str):
            raise TunedCompositeError(f"{path}: field 'tuning.{name}' must be a text")
    return TunedComposite(composite, keys["text_keys"], record, path, keys["normalised_keys"])


def write_tuned_composite(folder: str | os.PathLike, tuned: TunedComposite) -> Optional[str]:
    """Write ``tuned`` as ``folder/lrp_composite.json`` (atomically); returns the path.

    Called by ``save_pretrained`` after the weights: when the folder's weights are not those the
    composite was tuned on, the copy is marked (``tuning.weights_changed``, both digests) so that
    ``lrp:tuned`` refuses it; a damaged composite is not written (None)."""
    if tuned.composite is None:
        return None
    path = os.path.join(folder, COMPOSITE_FILE)
    expected = tuned.tuning.get("weights_sha256")
    saved = _saved_weights_digest(folder) if isinstance(expected, str) else None
    if saved is not None and saved != expected:
        record = dict(tuned.record)
        record["tuning"] = {**tuned.tuning, "weights_changed": {"tuned_on": expected, "saved": saved}}
        tuned = TunedComposite(tuned.composite, tuned.tuning_texts, record, path, tuned.normalised_texts)
    atomic_write_text(path, tuned.to_json())
    return path


def _weights_file(folder: str | os.PathLike) -> Optional[str]:
    for name in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _saved_weights_digest(folder: str | os.PathLike) -> Optional[str]:
    """:func:`weights_digest` of the weights file in ``folder`` (None: none there, the composite
    written alone)."""
    path = _weights_file(folder)
    if path is None:
        return None
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return weights_digest(load_file(path))
    return weights_digest(torch.load(path, map_location="cpu", weights_only=True))
