"""A model's identity by content: what a long ``--jsonl`` run records so that a resume with other
weights, another config or another vocabulary is refused, even from the same folder."""
from __future__ import annotations

import hashlib
import json

import torch


def model_digest(model: torch.nn.Module, tokenizer) -> str:
    """SHA-256 (hex) of every tensor of ``model.state_dict()`` (name, dtype, shape and bytes, in
    name order), the model's config and the tokenizer's vocabulary and settings. Equal digests
    mean equal numbers; any changed weight, config field or token changes it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{values.dtype}|{tuple(values.shape)}|".encode("utf-8"))
        digest.update(values.reshape(-1).view(torch.uint8).numpy())
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else vars(model.config)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode("utf-8"))
    vocabulary = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    digest.update(json.dumps(sorted(vocabulary.items()), ensure_ascii=False).encode("utf-8"))
    settings = {key: getattr(tokenizer, key, None) for key in ("do_lower_case", "model_max_length")}
    digest.update(json.dumps([type(tokenizer).__name__, settings], sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()
