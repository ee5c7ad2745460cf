"""Classification metrics (accuracy, macro-F1) and entity-level P/R/F1 as conlleval/seqeval count them."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple


def accuracy(gold: Sequence, predicted: Sequence) -> float:
    _same_length(gold, predicted)
    return sum(g == p for g, p in zip(gold, predicted)) / len(gold) if gold else 0.0


def macro_f1(gold: Sequence, predicted: Sequence, labels: Sequence | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (default: classes seen in gold or predictions),
    as ``sklearn.metrics.f1_score(average="macro")``; a class with no support and no prediction scores 0."""
    _same_length(gold, predicted)
    classes = sorted(set(gold) | set(predicted)) if labels is None else list(labels)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, predicted))
        fp = sum(g != c and p == c for g, p in zip(gold, predicted))
        fn = sum(g == c and p != c for g, p in zip(gold, predicted))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def _same_length(gold: Sequence, predicted: Sequence) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")


# ----------------------------------------------------------------------- entities
def _split(tag: str) -> Tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "_")`` (seqeval's convention)."""
    return tag[0], (tag[1:].split("-", maxsplit=1)[-1] or "_")


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def entities(tags: Sequence[str]) -> List[Tuple[str, int, int]]:
    """Entity spans ``(type, first, last)`` of one tag sequence; IOB1, IOB2 and IOBES are all read
    as conlleval does (an ``I-X`` after ``O`` or after another type starts an entity)."""
    spans = []
    prev_tag, prev_type, begin = "O", "", 0
    for index, chunk in enumerate(list(tags) + ["O"]):
        tag, type_ = _split(chunk)
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            spans.append((prev_type, begin, index - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = index
        prev_tag, prev_type = tag, type_
    return spans


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> Dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences (exact span and type match)."""
    _same_length(gold, predicted)
    true_total = predicted_total = correct = 0
    for index, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"sentence {index}: {len(g)} gold tags but {len(p)} predicted tags")
        gold_spans, predicted_spans = set(entities(g)), set(entities(p))
        true_total += len(gold_spans)
        predicted_total += len(predicted_spans)
        correct += len(gold_spans & predicted_spans)
    precision = correct / predicted_total if predicted_total else 0.0
    recall = correct / true_total if true_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
