"""Hugging Face hub ids (``org/name``): the local cache first, a download only when allowed.

The cache is laid out as ``huggingface_hub`` lays it out::

    $HF_HUB_CACHE (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
      models--org--name/
        refs/main              the commit hash the snapshot of ``main`` is stored under
        snapshots/<hash>/      config.json, model.safetensors, tokenizer files (links into blobs/)

A download needs the optional ``huggingface_hub`` package and is skipped when ``HF_HUB_OFFLINE``
(or ``TRANSFORMERS_OFFLINE``) is set; then a hub id that is not cached is a one-line error.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from ..errors import BertLrpError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = ("1", "true", "yes", "on")
_COMMIT = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")  # what huggingface_hub writes to refs/<branch>
_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a branch or a hash: no separators


class HubError(BertLrpError, OSError):
    """A hub id is neither a local folder nor in the cache, and cannot be downloaded."""


def looks_like_hub_id(name: str) -> bool:
    """``org/name``: one slash, no ``.``/``..`` parts (a missing folder of another shape stays a
    missing folder, never a hub lookup)."""
    return bool(_HUB_ID.match(name)) and not name.startswith(".") and ".." not in name


def hub_cache_dir() -> str:
    """``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub`` (as huggingface_hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(home, "hub")


def offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cached_snapshot(repo_id: str, revision: str = "main", cache_dir: Optional[str] = None) -> Optional[str]:
    """The snapshot folder of ``repo_id`` at ``revision`` (a branch under ``refs/`` or a commit
    hash) in the cache, or None when it is not there."""
    folder = os.path.join(cache_dir or hub_cache_dir(), "models--" + repo_id.replace("/", "--"))
    snapshots = os.path.join(folder, "snapshots")
    if not os.path.isdir(snapshots):
        return None
    if not _SNAPSHOT_NAME.match(revision):
        raise HubError(f"revision {revision!r} is not a branch name or a commit hash")
    ref = os.path.join(folder, "refs", revision)
    commit = revision
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8", errors="replace") as handle:
            commit = handle.read().strip()
        if not _COMMIT.match(commit):  # a ref must name a snapshot folder inside the cache, nothing else
            raise HubError(f"{ref}: not a commit hash ({commit[:60]!r}); the cache entry is damaged or was "
                           "tampered with")
    path = os.path.join(snapshots, commit)
    if os.path.isdir(path):
        return path
    if revision == "main" and not os.path.exists(ref):  # no ref: the only snapshot, if just one
        found = [d for d in os.listdir(snapshots) if os.path.isdir(os.path.join(snapshots, d))]
        if len(found) == 1:
            return os.path.join(snapshots, found[0])
    return None


def resolve_hub_id(repo_id: str, revision: str = "main") -> str:
    """A local folder holding the files of hub model ``repo_id``: the cached snapshot, else a
    download through ``huggingface_hub`` (when installed and not offline)."""
    snapshot = cached_snapshot(repo_id, revision)
    if snapshot is not None:
        return snapshot
    where = hub_cache_dir()
    if offline():
        raise HubError(f"{repo_id!r} is not a local folder and not in the Hugging Face cache {where}, and "
                       f"HF_HUB_OFFLINE is set: download it once online (unset HF_HUB_OFFLINE) or pass a folder")
    try:
        import huggingface_hub
    except ImportError:
        raise HubError(f"{repo_id!r} is not a local folder and not in the Hugging Face cache {where}; "
                       f"install huggingface_hub to download it, or pass a folder") from None
    try:
        return huggingface_hub.snapshot_download(
            repo_id, revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "merges.txt", "vocab.*"])
    except Exception as error:  # network, unknown repository, gated model
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HubError(f"{repo_id!r} is not a local folder, not in the Hugging Face cache {where}, and cannot be "
                       f"downloaded ({first}); pass a folder, or set HF_HUB_OFFLINE=1 to stay offline") from None
