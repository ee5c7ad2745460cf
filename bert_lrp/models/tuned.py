"""A model's tuned LRP composite: ``lrp_composite.json`` next to its weights (written by ``bert-lrp
tune-lrp``), read when the model is loaded and used by ``--rule tuned`` / ``lrp:tuned``.

The file also names the texts the composite was tuned on (the first 16 hex digits of each text's
sha256), so that an evaluation can refuse to score the composite on its own tuning data.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, Optional

from ..output import atomic_write_text
from ..errors import BertLrpError
from ..rules.composites import Composite

COMPOSITE_FILE = "lrp_composite.json"
FORMAT = "bert-lrp tuned composite"
VERSION = 2  # 2: linear rules as {"name": ..., parameter: value}; 1: a rule name beside flat parameters
READABLE_VERSIONS = (1, 2)


class TunedCompositeError(BertLrpError, ValueError):
    """A damaged ``lrp_composite.json`` (the message names the file and the field)."""


def text_key(text: str) -> str:
    """What identifies a text among the tuning texts: its sha256 (16 hex digits), spaces trimmed."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class TunedComposite:
    """``composite`` (named ``tuned``), the keys of the texts it was tuned on, and the whole record
    (``tuning``: data, scores, search log) as the file holds it."""

    composite: Composite
    tuning_texts: FrozenSet[str] = frozenset()
    record: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    path: Optional[str] = None

    def overlap(self, texts: Iterable[str]) -> int:
        """How many of ``texts`` were tuning texts."""
        return sum(text_key(t) in self.tuning_texts for t in texts)

    def to_json(self) -> str:
        record = dict(self.record)
        record.update({"format": FORMAT, "version": VERSION, "composite": self.composite.to_dict()})
        record.setdefault("tuning", {})
        record["tuning"] = {**record["tuning"], "text_keys": sorted(self.tuning_texts)}
        return json.dumps(record, indent=1) + "\n"


def read_tuned_composite(folder: str | os.PathLike) -> Optional[TunedComposite]:
    """The tuned composite in ``folder`` (None when it has no ``lrp_composite.json``); a damaged
    file raises :class:`TunedCompositeError` naming the file and the field."""
    path = os.path.join(folder, COMPOSITE_FILE)
    if not os.path.isfile(path):
        return None
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
    keys = (record.get("tuning") or {}).get("text_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TunedCompositeError(f"{path}: field 'tuning.text_keys' must be a list of texts")
    return TunedComposite(composite, frozenset(keys), record, path)


def write_tuned_composite(folder: str | os.PathLike, tuned: TunedComposite) -> str:
    """Write ``tuned`` as ``folder/lrp_composite.json`` (atomically); returns the path."""
    path = os.path.join(folder, COMPOSITE_FILE)
    atomic_write_text(path, tuned.to_json())
    return path
