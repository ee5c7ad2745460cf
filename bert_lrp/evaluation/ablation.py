"""The accuracy of a sequence classifier with some encoder layers removed.

:func:`accuracy` classifies a labelled data file (the strict reader of ``bert-lrp evaluate``) with
the layers removed by :func:`bert_lrp.models.ablation.skip_layers` and scores it with
:func:`bert_lrp.training.metrics.accuracy`; ``scripts/layer_ablation.py`` uses it for the
single-layer ablation table of ``docs/inside.md``. :mod:`bert_lrp.ablate` re-exports it.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

import torch
from torch import nn

from ..errors import RequestError
from ..models.ablation import skip_layers

__all__ = ["predict", "accuracy"]


@torch.no_grad()
def predict(model: nn.Module, tokenizer, texts: Sequence[str], batch_size: int = 64) -> List[int]:
    """The predicted class of each text (``logits [batch, num_labels]`` -> argmax), in batches of
    similar length (the road's :func:`~bert_lrp.attribution.road.encoded_batches`). The model is put in eval mode."""
    from ..attribution.road import encoded_batches

    model.eval()
    predictions: List[int] = [0] * len(texts)
    for indices, encoding in encoded_batches(model, tokenizer, texts, batch_size):
        logits = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                       token_type_ids=encoding["token_type_ids"]).logits
        for row, index in enumerate(indices):
            predictions[index] = int(logits[row].argmax())
    return predictions


def accuracy(model: nn.Module, tokenizer, data: str, skip: Iterable[int] = (), batch_size: int = 64,
             limit: Optional[int] = None) -> dict:
    """Accuracy of a sequence classifier on the labelled file ``data`` (a ``sentence`` and a
    ``label`` column, read as ``bert-lrp evaluate --data`` reads it) with the layers ``skip``
    removed: ``{"skip_layers", "examples", "correct", "accuracy"}``. The score is
    :func:`bert_lrp.training.metrics.accuracy` (fraction of predictions equal to the label)."""
    from ..training.metrics import accuracy as score
    from .faithfulness import read_data

    rows = [(text, label) for text, label in read_data(data, model.config.label2id, limit) if label is not None]
    if not rows:
        raise RequestError("data", f"{data}: no labelled examples (a 'label' column is needed for accuracy)")
    skip = list(skip)
    with skip_layers(model, skip, "skip"):
        predicted = predict(model, tokenizer, [text for text, _ in rows], batch_size)
    gold = [label for _, label in rows]
    return {"skip_layers": sorted(set(skip)), "examples": len(rows),
            "correct": sum(g == p for g, p in zip(gold, predicted)), "accuracy": score(gold, predicted)}
