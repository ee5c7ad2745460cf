"""Which output an explanation explains: the task of a model, the target label and position,
and the selection of the target's score from the logits."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

Target = Union[None, int, str, Sequence, torch.Tensor]


def task_of(model: nn.Module) -> str:
    """The task a model's head declares (its class attribute ``task``): ``sequence``, ``token``,
    ``masked_lm`` or ``multiple_choice``."""
    task = getattr(model, "task", None)
    if task not in ("sequence", "token", "masked_lm", "multiple_choice"):
        raise TypeError(f"explain supports <Family>ForSequenceClassification, <Family>ForTokenClassification, "
                        f"<Family>ForQuestionAnswering, <Family>ForMultipleChoice and <Family>ForMaskedLM/"
                        f"BertForPreTraining (Bert, Roberta, DistilBert, Electra), not {type(model).__name__}")
    return task


def logits_of(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output[0]


def resolve_target(model: nn.Module, task: str, logits: torch.Tensor, target: Target
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """-> (label ``[batch]``, position ``[batch]`` or None)."""
    batch = logits.shape[0]
    device = logits.device
    if task == "sequence":
        if target is None:
            return logits.argmax(-1), None
        labels = _as_labels(model, target, batch)
        _check_range("target class", labels, logits.shape[-1])
        return labels.to(device), None
    # token classification and masked LM: (position, label) pairs
    if target is None:
        raise ValueError(f"explaining a {type(model).__name__} needs target=(position, label) "
                         "(label None: the predicted one); e.g. target=(3, None)")
    if isinstance(target, tuple) and len(target) == 2 and not isinstance(target[0], (tuple, list)):
        target = [target] * batch
    if len(target) != batch:
        raise ValueError(f"got {len(target)} targets for a batch of {batch}")
    positions = torch.tensor([int(p) for p, _ in target], device=device)
    _check_range("target position", positions, logits.shape[1])
    rows = torch.arange(batch, device=device)
    predicted = logits[rows, positions].argmax(-1)
    labels = torch.stack([predicted[i] if label is None else _as_labels(model, label, 1)[0].to(device)
                          for i, (_, label) in enumerate(target)])
    _check_range("target label", labels, logits.shape[-1])
    return labels, positions


def _as_labels(model: nn.Module, target: Target, batch: int) -> torch.Tensor:
    label2id = getattr(model.config, "label2id", {}) if hasattr(model, "config") else {}
    if isinstance(target, str):
        if target not in label2id:
            raise ValueError(f"unknown target label {target!r}; the model's labels are {sorted(label2id)}")
        target = label2id[target]
    if isinstance(target, int):
        return torch.full((batch,), target, dtype=torch.long)
    values = [label2id[t] if isinstance(t, str) else int(t) for t in target]
    if len(values) != batch:
        raise ValueError(f"got {len(values)} targets for a batch of {batch}")
    return torch.tensor(values, dtype=torch.long)


def _check_range(what: str, values: torch.Tensor, limit: int) -> None:
    bad = values[(values < 0) | (values >= limit)]
    if bad.numel():
        raise ValueError(f"{what} {int(bad[0])} is outside [0, {limit})")


def select(logits: torch.Tensor, labels: torch.Tensor, positions: Optional[torch.Tensor]) -> torch.Tensor:
    rows = torch.arange(logits.shape[0], device=logits.device)
    if positions is None:
        return logits[rows, labels]
    return logits[rows, positions, labels]
