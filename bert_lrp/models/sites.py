"""Where each linear layer of a model sits (:class:`~bert_lrp.rules.composites.Site`): its kind
(embedding projection, attention projection, feed-forward, pooler, classifier head) and its encoder layer, read off the
module names every family shares with transformers (``...layer.3.attention.self.query``,
``...layer.3.intermediate.dense``, DistilBERT's ``...layer.3.ffn.lin1``, ``pooler.dense``,
``classifier``). Only BERT's own pooler (``pooler.dense``) is of kind ``pooler``: the dense layers of
RoBERTa's and ELECTRA's classification heads (``classifier.dense``) and DistilBERT's
``pre_classifier`` belong to the head, kind ``classifier``. Composites with per-layer linear rules
look the sites up through the RuleSet."""
from __future__ import annotations

import re
from typing import Dict

from torch import nn

from ..rules.composites import Site

_IN_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.(.+)$")


def site_of(name: str) -> Site:
    """The site of the linear module called ``name`` (as ``model.named_modules()`` names it)."""
    match = _IN_LAYER.search(name)
    if match:
        part = match.group(2)
        return Site("attention" if part.startswith("attention") else "ffn", int(match.group(1)))
    parts = name.split(".")
    if "pooler" in parts:
        return Site("pooler")
    if any(part.startswith("embeddings") for part in parts):  # ELECTRA's embeddings_project
        return Site("embeddings")
    return Site("classifier")


def linear_sites(model: nn.Module) -> Dict[nn.Module, Site]:
    """Every ``nn.Linear`` of ``model`` -> its :class:`Site`."""
    return {module: site_of(name) for name, module in model.named_modules() if isinstance(module, nn.Linear)}
