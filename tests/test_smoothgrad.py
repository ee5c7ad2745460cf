"""SmoothGrad (``sg`` over GS, ``sg_gi`` over GI), specified.

* An example's noise is drawn for its real tokens only, from a generator seeded by the seed and
  its real token ids, so its scores are the same alone, in a padded batch of other lengths, at
  another place in the batch and with extra padding.
* The same seed gives the same scores; smoothgrad_sigma 0 gives GS and GI.
* The noise's standard deviation is ``smoothgrad_sigma`` x the standard deviation of the example's
  embedding-output values over its real tokens (default ``DEFAULT_SIGMA``), small enough that a
  trained model keeps its prediction on almost every noisy copy.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bert_lrp import BertConfig, BertForSequenceClassification, explain
from bert_lrp.attribution import registry
from bert_lrp.attribution.smoothgrad import (DEFAULT_SAMPLES, DEFAULT_SIGMA, SAMPLES, SIGMA, noise_scale,
                                             smoothgrad_noise)
from bert_lrp.models.tokenization import BertTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "film", "is", "great", "bad", "movie", "un",
         "##believ", "##able", "not", "boring", "and", "very", "good", "paris", ".", ","]
TEXTS = ["the film is great", "not boring and very good , the film is unbelievable", "a bad movie"]
TARGETS = [1, 0, 2]
METHODS = ("smoothgrad", "smoothgrad_x_input")


def tiny_model(seed: int = 0) -> BertForSequenceClassification:
    """A tiny random BERT in float64 (so that float rounding of differently shaped batches stays
    far below the tolerances), with weights large enough that words matter."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=30, max_position_embeddings=32)
    model = BertForSequenceClassification(config, num_labels=3)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.3)
    return model.double().eval()


@pytest.fixture
def tokenizer(tmp_path: Path) -> BertTokenizer:
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer.from_vocab(tmp_path / "vocab.txt")


def sg(model, batch, target, **options):
    options = {"smoothgrad_samples": 4, "seed": 7, **options}
    return explain(model, batch, ["sg", "sg_gi"], target=target, **options)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, relative: float = 1e-9) -> None:
    """Equal up to ``relative`` x the largest |expected| score."""
    largest = float(expected.abs().max())
    assert largest > 0
    assert float((actual - expected).abs().max()) <= relative * largest


def test_an_example_scores_the_same_alone_in_a_mixed_batch_and_with_extra_padding(tokenizer):
    model = tiny_model()
    alone = [sg(model, tokenizer([text]), [target]) for text, target in zip(TEXTS, TARGETS)]
    mixed = sg(model, tokenizer(TEXTS), TARGETS)
    reversed_order = sg(model, tokenizer(TEXTS[::-1]), TARGETS[::-1])
    padded = sg(model, tokenizer(TEXTS, padding="max_length", max_length=24), TARGETS)
    lengths = [result.scores["smoothgrad"].shape[1] for result in alone]
    assert len(set(lengths)) == 3 and mixed.scores["smoothgrad"].shape[1] == max(lengths) < 24  # padding differs
    for method in METHODS:
        for row, (result, length) in enumerate(zip(alone, lengths)):
            own = result.scores[method][0]
            for batch_result, batch_row in ((mixed, row), (reversed_order, len(TEXTS) - 1 - row), (padded, row)):
                scores = batch_result.scores[method][batch_row]
                assert_close(scores[:length], own)
                assert scores[length:].abs().sum() == 0  # padding gets no score
                assert_close(batch_result.relevance[method][batch_row, :length], result.relevance[method][0])


def test_noise_is_drawn_for_the_real_tokens_wherever_they_are_in_the_row():
    generator = torch.Generator().manual_seed(0)
    hidden, samples, n = 8, 5, 4
    values = torch.randn(1, n, hidden, generator=generator, dtype=torch.float64)
    ids = torch.tensor([[2, 9, 7, 3]])
    far_off = torch.full((1, 3, hidden), 100.0, dtype=torch.float64)  # padding rows: any values, never used
    pad_ids, no, yes = torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), torch.ones(1, n,
                                                                                                      dtype=torch.long)
    alone = smoothgrad_noise(values, yes, ids, samples, 0.5, seed=3)
    assert alone.shape == (1, samples, n, hidden)  # [batch, samples, seq, hidden]
    right = smoothgrad_noise(torch.cat([values, far_off], 1), torch.cat([yes, no], 1), torch.cat([ids, pad_ids], 1),
                             samples, 0.5, seed=3)
    left = smoothgrad_noise(torch.cat([far_off, values], 1), torch.cat([no, yes], 1), torch.cat([pad_ids, ids], 1),
                            samples, 0.5, seed=3)
    other = torch.randn(1, n + 3, hidden, generator=generator, dtype=torch.float64)
    in_batch = smoothgrad_noise(torch.cat([other, torch.cat([values, far_off], 1)]),
                                torch.cat([torch.ones(1, n + 3, dtype=torch.long), torch.cat([yes, no], 1)]),
                                torch.cat([torch.tensor([[2, 5, 6, 7, 8, 9, 3]]), torch.cat([ids, pad_ids], 1)]),
                                samples, 0.5, seed=3)
    assert torch.equal(right[0, :, :n], alone[0]) and right[0, :, n:].abs().sum() == 0
    assert torch.equal(left[0, :, 3:], alone[0]) and left[0, :, :3].abs().sum() == 0
    assert torch.equal(in_batch[1], right[0])
    assert not torch.equal(smoothgrad_noise(values, yes, ids, samples, 0.5, seed=4), alone)  # the seed matters
    assert not torch.equal(in_batch[0, :, :n], alone[0])  # so do the tokens


def test_the_same_seed_gives_identical_scores_and_another_seed_other_scores(tokenizer):
    model, batch = tiny_model(), tokenizer(TEXTS)
    first, again, other = (sg(model, batch, TARGETS, seed=seed) for seed in (5, 5, 6))
    for method in METHODS:
        assert torch.equal(first.scores[method], again.scores[method])
        assert torch.equal(first.relevance[method], again.relevance[method])
        assert not torch.equal(first.scores[method], other.scores[method])


def test_sigma_zero_gives_gs_and_gi(tokenizer):
    model, batch = tiny_model(), tokenizer(TEXTS)
    result = explain(model, batch, ["gs", "gi", "sg", "sg_gi"], target=TARGETS, smoothgrad_sigma=0.0,
                     smoothgrad_samples=3)
    for noisy, plain in (("smoothgrad", "gradient"), ("smoothgrad_x_input", "gradient_x_input")):
        assert_close(result.scores[noisy], result.scores[plain])
        assert_close(result.relevance[noisy], result.relevance[plain])


def test_the_default_noise_scale_is_sigma_times_the_std_of_the_real_embedding_output_values(tokenizer):
    assert SIGMA.default == DEFAULT_SIGMA and SAMPLES.default == DEFAULT_SAMPLES == 25
    for name in ("sg", "sg_gi"):
        assert {SIGMA, SAMPLES} <= set(registry.get(name).options)
    model, batch = tiny_model(), tokenizer(TEXTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        embedded = model.base_model.embed(ids, batch["token_type_ids"])
    lengths = mask.sum(1).tolist()
    assert min(lengths) < ids.shape[1]  # some rows are padded: their padding must not count
    expected = []
    for b, n in enumerate(lengths):
        values = embedded[b, :n].flatten()  # real tokens x hidden units
        expected.append(math.sqrt(float(((values - values.mean()) ** 2).mean())))
    assert torch.allclose(noise_scale(embedded, mask), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    noise = smoothgrad_noise(embedded, mask, ids, 400, DEFAULT_SIGMA, seed=0)
    for b, n in enumerate(lengths):
        draws = noise[b, :, :n]  # 400 x n x 24 draws
        assert abs(float(draws.std()) / (DEFAULT_SIGMA * expected[b]) - 1) < 0.02
        assert abs(float(draws.mean())) < 0.02 * expected[b]
    # explain's default is that formula with DEFAULT_SIGMA
    default = explain(model, batch, ["sg", "sg_gi"], target=TARGETS, smoothgrad_samples=3, seed=1)
    explicit = explain(model, batch, ["sg", "sg_gi"], target=TARGETS, smoothgrad_samples=3, seed=1,
                       smoothgrad_sigma=DEFAULT_SIGMA)
    for method in METHODS:
        assert torch.equal(default.scores[method], explicit.scores[method])


def _polarity_data(count: int, generator: torch.Generator, polarity: torch.Tensor):
    """Rows of 3-11 random words (ids 5..59); label 1 if the words' polarities (+1 / -1) sum above 0,
    0 below (ties are left out, so every sentence has a clear answer)."""
    rows = []
    while len(rows) < count:
        words = torch.randint(5, 60, (int(torch.randint(3, 12, (1,), generator=generator)),), generator=generator)
        total = float(polarity[words].sum())
        if total != 0:
            rows.append((words, int(total > 0)))
    return rows


def _batch(rows):
    length = max(len(words) for words, _ in rows) + 2
    ids, mask = torch.zeros(len(rows), length, dtype=torch.long), torch.zeros(len(rows), length, dtype=torch.long)
    for i, (words, _) in enumerate(rows):
        ids[i, :len(words) + 2] = torch.cat([torch.tensor([2]), words, torch.tensor([3])])
        mask[i, :len(words) + 2] = 1
    return ids, mask, torch.tensor([label for _, label in rows])


def _flipped_fraction(model, rows, sigma: float, samples: int = 25) -> float:
    """The fraction of SmoothGrad's noisy copies (seed 0) predicting another class than the clean input."""
    flipped = 0
    with torch.no_grad():
        for row in rows:
            ids, mask, _ = _batch([row])
            embedded = model.base_model.embed(ids, torch.zeros_like(ids))
            clean = model(attention_mask=mask, embedding_output=embedded).logits.argmax(-1)
            noise = smoothgrad_noise(embedded, mask, ids, samples, sigma, seed=0)[0]
            noisy = model(attention_mask=mask.expand(samples, -1), embedding_output=embedded + noise).logits
            flipped += int((noisy.argmax(-1) != clean).sum())
    return flipped / (samples * len(rows))


@pytest.mark.slow
def test_the_default_noise_rarely_changes_a_trained_models_prediction():
    """A tiny BERT trained on a word-polarity task, with an embedding output scaled like the shipped
    MiniLM's (LayerNorm weight 0.45, about the per-unit std measured there; one outlier unit at -6,
    as MiniLM's units 63 and 99 reach +-6): under the default noise, fewer than 5 % of the noisy
    copies change the prediction, while 4x that noise changes more than that, so the bound is not
    met by a model that ignores its input."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    polarity = torch.randn(60, generator=generator).sign()
    config = BertConfig(vocab_size=60, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config, num_labels=2)
    norm = model.bert.embeddings.LayerNorm
    with torch.no_grad():
        norm.weight.fill_(0.45)
        norm.bias[0] = -6.0
    norm.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    for _ in range(300):
        ids, mask, labels = _batch(_polarity_data(32, generator, polarity))
        logits = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    held_out = _polarity_data(40, torch.Generator().manual_seed(1000), polarity)
    ids, mask, labels = _batch(held_out)
    with torch.no_grad():
        predictions = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits.argmax(-1)
    assert float((predictions == labels).double().mean()) >= 0.9  # the model has learnt the task
    with torch.no_grad():
        embedded = model.base_model.embed(ids, torch.zeros_like(ids))
    spread = noise_scale(embedded, mask)
    assert 0.6 < float(spread.mean()) < 1.0  # MiniLM: 0.48 over 384 units; here the one outlier of 64 weighs more
    assert _flipped_fraction(model, held_out, DEFAULT_SIGMA) < 0.05
    assert _flipped_fraction(model, held_out, 4 * DEFAULT_SIGMA) > 0.05
