"""Our metrics against scikit-learn and seqeval on fixed and random predictions."""
from __future__ import annotations

import random

import pytest

from bert_lrp.training.metrics import accuracy, entities, entity_scores, macro_f1

sklearn_metrics = pytest.importorskip("sklearn.metrics")
seqeval_metrics = pytest.importorskip("seqeval.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_macro_f1_equal_scikit_learn(seed):
    rng = random.Random(seed)
    classes = rng.randint(2, 5)
    gold = [rng.randrange(classes) for _ in range(200)]
    predicted = [g if rng.random() < 0.6 else rng.randrange(classes) for g in gold]
    assert accuracy(gold, predicted) == pytest.approx(sklearn_metrics.accuracy_score(gold, predicted))
    assert macro_f1(gold, predicted) == pytest.approx(sklearn_metrics.f1_score(gold, predicted, average="macro"))


def test_macro_f1_counts_a_never_predicted_class_as_zero():
    gold, predicted = [0, 0, 1, 1, 2], [0, 0, 1, 1, 1]
    expected = sklearn_metrics.f1_score(gold, predicted, average="macro", zero_division=0)
    assert macro_f1(gold, predicted) == pytest.approx(expected)
    assert macro_f1(gold, predicted, labels=[0, 1, 2, 3]) == pytest.approx(
        sklearn_metrics.f1_score(gold, predicted, labels=[0, 1, 2, 3], average="macro", zero_division=0))


FIXED_GOLD = [
    ["I-PER", "I-PER", "O", "I-LOC", "O", "I-ORG", "I-ORG", "B-ORG"],  # IOB1: B- only between same types
    ["O", "I-MISC", "I-MISC", "O", "O"],
    ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"],  # IOB2
]
FIXED_PREDICTED = [
    ["I-PER", "I-PER", "O", "I-LOC", "O", "I-ORG", "I-ORG", "I-ORG"],
    ["O", "I-MISC", "O", "O", "I-PER"],
    ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC"],
]


def test_entity_spans_read_iob1_and_iob2_like_conlleval():
    assert entities(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4)]
    assert entities(["B-PER", "I-PER", "I-ORG", "O"]) == [("PER", 0, 1), ("ORG", 2, 2)]
    assert entities(["O", "O"]) == []


def test_entity_scores_equal_seqeval_on_fixed_predictions():
    ours = entity_scores(FIXED_GOLD, FIXED_PREDICTED)
    assert ours["f1"] == pytest.approx(seqeval_metrics.f1_score(FIXED_GOLD, FIXED_PREDICTED))
    assert ours["precision"] == pytest.approx(seqeval_metrics.precision_score(FIXED_GOLD, FIXED_PREDICTED))
    assert ours["recall"] == pytest.approx(seqeval_metrics.recall_score(FIXED_GOLD, FIXED_PREDICTED))
    assert 0 < ours["f1"] < 1


@pytest.mark.parametrize("seed", range(10))
def test_entity_scores_equal_seqeval_on_random_tags(seed):
    rng = random.Random(seed)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "I-MISC", "B-MISC"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 15))] for _ in range(30)]
    predicted = [[t if rng.random() < 0.7 else rng.choice(tags) for t in sentence] for sentence in gold]
    ours = entity_scores(gold, predicted)
    assert ours["f1"] == pytest.approx(seqeval_metrics.f1_score(gold, predicted))
    assert ours["precision"] == pytest.approx(seqeval_metrics.precision_score(gold, predicted))
    assert ours["recall"] == pytest.approx(seqeval_metrics.recall_score(gold, predicted))


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 gold labels but 2 predictions"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted tags"):
        entity_scores([["O", "O"]], [["O"]])
