"""Atomic file output, kept under its old name: every function here is the one writer's,
:mod:`bert_lrp.output` (re-exported for the callers that import it from here). Input files are
read by :mod:`bert_lrp.data`."""
from __future__ import annotations

from .output import (atomic_directory, atomic_write, atomic_write_many, atomic_write_text,  # noqa: F401
                     atomic_write_texts, make_folders, remove_empty_folders)
