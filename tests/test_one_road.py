"""One road from text to explanation: every registered method, with fixed seeds, gives the same
scores whichever way a text takes:

1. ``explain()`` on the text alone,
2. ``explain()`` in a padded batch of texts of other lengths,
3. the windowed road (``explain_windows``, one window when the text fits),
4. ``bert-lrp explain --json``,
5. ``bert-lrp explain --jsonl``,

for short texts, sentence pairs with token types (BERT) and without (DistilBERT), and a text
longer than the model's positions (roads 3-5).

Tolerance: 1e-5 of the largest absolute score of the method on that text. Batching changes the
order of float32 sums (matrix products over a different padded width), so scores agree to
rounding, not bit for bit; the seeded sampling methods (SHAP, LIME, SmoothGrad) draw the same
coalitions and noise on every road (their seeds depend on the seed and the text's real tokens
only), so they agree to the same rounding. The original BERT-LRP preset (``lrp:bert-lrp``)
divides by sums of relevance at every dense layer (its alpha-beta rule and rescaling), which
amplifies float32 rounding to ~3e-5: 1e-4 for it. In float64 every method agrees to 1e-10 (the
last tests), which shows the differences are rounding, not a dependence on the batch.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

from bert_lrp import cli, explain
from bert_lrp.attribution import registry
from bert_lrp.attribution.road import Request, explain_texts, explain_windows
from bert_lrp.models.config import DistilBertConfig
from bert_lrp.models.distilbert import DistilBertForSequenceClassification
from bert_lrp.models.loading import load_model
from bert_lrp.models.tuned import TunedComposite, write_tuned_composite
from bert_lrp.rules.composites import ATTNLRP, LinearOverride

from test_explain_cli import VOCAB, make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)

OPTIONS = {"ig_steps": 4, "shap_samples": 24, "shap_exact_words": 3, "lime_samples": 24, "smoothgrad_samples": 3,
           "seed": 7, "rows_per_forward": 5}
TEXTS = ["the film is great", "a bad movie", "the unbelievable film is very good and not boring",
         "she moved to paris in may , the film is good"]
PAIR = ("the film is great", "a bad movie and not good")
RELATIVE = 1e-5
RELATIVE_BY_METHOD = {"lrp:bert-lrp": 1e-4}  # float32 rounding amplified by the rule's divisions (see above)


TUNED = replace(ATTNLRP, name="tuned", softmax="detach", token_parts="word", linear_overrides=(
    LinearOverride("gamma", layers=(0, 1), gamma=0.3), LinearOverride("zplus", kinds=("classifier",))))


def all_methods() -> List[str]:
    return [m.name for m in registry.all_methods()]


def flags(options: Dict[str, object]) -> List[str]:
    return [item for name, value in options.items() for item in ("--" + name.replace("_", "-"), str(value))]


def make_distilbert_dir(path: Path, seed: int = 0) -> Path:
    """A tiny random DistilBERT classifier (no token types) with the same vocabulary."""
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=37, max_position_embeddings=64, id2label={0: "negative", 1: "positive"})
    model = DistilBertForSequenceClassification(config)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.3)
    model.eval()
    model.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def family(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    (make_model_dir if request.param == "bert" else make_distilbert_dir)(folder / "model")
    # a tuned composite with per-layer rules, so that lrp:tuned takes every road too
    write_tuned_composite(folder / "model", TunedComposite(TUNED))
    model, tokenizer = load_model(folder / "model")
    return request.param, folder / "model", model, tokenizer


def assert_same(reference: torch.Tensor, other, where: str, tolerance: Optional[float] = None) -> None:
    other = torch.as_tensor(other, dtype=torch.float64)
    reference = reference.double()
    assert other.shape == reference.shape, f"{where}: shape {tuple(other.shape)} vs {tuple(reference.shape)}"
    if tolerance is None:
        tolerance = next((t for m, t in RELATIVE_BY_METHOD.items() if f", {m}," in where + ","), RELATIVE)
    scale = max(float(reference.abs().max()), 1e-12)
    worst = float((other - reference).abs().max()) / scale
    assert worst <= tolerance, f"{where}: differs by {worst:.2e} of the largest score"


def alone(model, tokenizer, text: str, pair: Optional[str] = None, target=None) -> Dict[str, torch.Tensor]:
    """Road 1: explain() on the text alone; scores cut to its tokens."""
    batch = tokenizer([text], None if pair is None else [pair])
    result = explain(model, batch, all_methods(), target=target, **OPTIONS)
    length = int(batch["attention_mask"][0].sum())
    return {m: result.scores[m][0, :length] for m in result.methods}


def command_records(folder: Path, tmp_path: Path, texts: List[str], pair: Optional[str] = None, *extra: str):
    """Roads 4 and 5: the records of ``bert-lrp explain --json`` and ``--jsonl`` on ``texts``."""
    common = ["explain", "--model", str(folder), "--methods", ",".join(all_methods()), *flags(OPTIONS), "--quiet",
              *(["--pair", pair] if pair is not None else []), *extra]
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(texts) + "\n", encoding="utf-8")
    as_json, as_jsonl = tmp_path / "out.json", tmp_path / "out.jsonl"
    assert cli.main([*common, "--json", str(as_json), "--file", str(data)]) == 0
    assert cli.main([*common, "--jsonl", str(as_jsonl), "--file", str(data), "--batch-size", "3"]) == 0
    records = [json.loads(line) for line in as_jsonl.read_text(encoding="utf-8").splitlines()]
    return json.loads(as_json.read_text(encoding="utf-8"))["examples"], records


def test_short_texts_give_the_same_scores_on_every_road(family, tmp_path):
    name, folder, model, tokenizer = family
    batch = tokenizer(TEXTS)  # padded to the longest text
    batched = explain(model, batch, all_methods(), **OPTIONS)
    from_json, from_jsonl = command_records(folder, tmp_path, TEXTS)
    for i, text in enumerate(TEXTS):
        reference = alone(model, tokenizer, text)
        length = len(reference["lrp"])
        windowed = explain_windows(model, tokenizer, text, all_methods(), **OPTIONS)
        assert windowed.windows == 1
        for method, scores in reference.items():
            where = f"{name}, text {i}, {method}"
            assert_same(scores, batched.scores[method][i, :length], where + ", padded batch")
            assert_same(scores, windowed.label().scores[method], where + ", windowed road")
            assert_same(scores, from_json[i]["scores"][method]["tokens"], where + ", --json")
            assert_same(scores, from_jsonl[i]["scores"][method]["tokens"], where + ", --jsonl")
        same = ("index", "source", "text", "tokens", "words", "prediction", "target", "methods")
        assert set(from_json[i]) == set(from_jsonl[i]), f"{name}, text {i}: --json and --jsonl records differ"
        assert {k: from_json[i][k] for k in same} == {k: from_jsonl[i][k] for k in same}


def test_sentence_pairs_give_the_same_scores_on_every_road(family, tmp_path):
    name, folder, model, tokenizer = family
    text, pair = PAIR
    reference = alone(model, tokenizer, text, pair)
    batch = tokenizer([TEXTS[2], text], [TEXTS[3], pair])  # the pair padded behind a longer one
    batched = explain(model, batch, all_methods(), **OPTIONS)
    windowed = explain_windows(model, tokenizer, text, all_methods(), pair=pair, **OPTIONS)
    from_json, from_jsonl = command_records(folder, tmp_path, [text], pair)
    assert from_jsonl[0]["pair"] == pair and windowed.windows == 1
    for method, scores in reference.items():
        where = f"{name}, pair, {method}"
        assert_same(scores, batched.scores[method][1, :len(scores)], where + ", padded batch")
        assert_same(scores, windowed.label().scores[method], where + ", windowed road")
        assert_same(scores, from_json[0]["scores"][method]["tokens"], where + ", --json")
        assert_same(scores, from_jsonl[0]["scores"][method]["tokens"], where + ", --jsonl")


def test_a_text_longer_than_the_positions_gives_the_same_scores_on_every_road(family, tmp_path):
    name, folder, model, tokenizer = family
    long_text = " ".join(TEXTS * 5)  # ~140 pieces, the model reads 64
    windowed = explain_windows(model, tokenizer, long_text, all_methods(), stride=20, **OPTIONS)
    assert windowed.windows > 1 and len(windowed.tokens) > 64
    from_json, from_jsonl = command_records(folder, tmp_path, [long_text], None, "--stride", "20")
    assert from_json[0]["windows"] == from_jsonl[0]["windows"] == windowed.windows
    for method, scores in windowed.label().scores.items():
        where = f"{name}, long text, {method}"
        assert_same(scores, from_json[0]["scores"][method]["tokens"], where + ", --json")
        assert_same(scores, from_jsonl[0]["scores"][method]["tokens"], where + ", --jsonl")


def test_a_long_pair_keeps_its_second_text_in_every_window(family):
    name, folder, model, tokenizer = family
    long_text = " ".join(TEXTS * 5)
    windowed = explain_windows(model, tokenizer, long_text, ["lrp", "occlusion"], pair="a bad movie", stride=20)
    sequences = windowed.encoding.sequence_ids[0]
    assert windowed.windows > 1 and sequences.count(1) == 3  # "a bad movie" once, in the whole text's tokens
    assert [w["word"] for w in windowed.words() if w["sequence"] == 1] == ["a", "bad", "movie"]


def test_words_of_a_window_are_the_texts_words(family):
    """Occlusion scores a word, not a piece: every piece of a word gets the same share in a window,
    also when the text is windowed (word ids go through the windows)."""
    name, folder, model, tokenizer = family
    text = "the unbelievable film is great"
    windowed = explain_windows(model, tokenizer, text, ["occlusion"], window=3, stride=1)
    plain = alone(model, tokenizer, text)["occlusion"]
    pieces = next(w["pieces"] for w in windowed.words() if w["word"] == "unbelievable")
    assert len(pieces) == 3 and windowed.windows > 1
    one_window = explain_windows(model, tokenizer, text, ["occlusion"]).label().scores["occlusion"]
    assert_same(plain, one_window, f"{name}: one window")
    assert torch.allclose(one_window[pieces], one_window[pieces[0]].expand(3))


def test_target_all_gives_every_label_the_same_way(family, tmp_path):
    name, folder, model, tokenizer = family
    methods = ["lrp:attnlrp", "gi", "occlusion", "ig"]
    batch = tokenizer(TEXTS[:2])
    result = explain(model, batch, methods, target="all", **OPTIONS)
    data = tmp_path / "two.txt"
    data.write_text("\n".join(TEXTS[:2]) + "\n", encoding="utf-8")
    out = tmp_path / "all.jsonl"
    assert cli.main(["explain", "--model", str(folder), "--methods", ",".join(methods), *flags(OPTIONS), "--quiet",
                     "--target", "all", "--file", str(data), "--jsonl", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    canonical = registry.canonical(methods)
    for i, record in enumerate(records):
        length = len(record["tokens"])
        assert record["target"] == "all"
        for label, name_ in model.config.labels_by_id().items():
            for method in canonical:
                assert_same(result.scores[method][i, label, :length], record["labels"][name_]["scores"][method]["tokens"],
                            f"{name}, text {i}, label {name_}, {method}")


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_lrp_presets_in_one_pass_equal_each_preset_alone(family, dtype, tolerance):
    """Three presets and GI stacked in one forward + one backward = each alone (float64: to 1e-10;
    float32: rounding of the stacked batch's larger matrix products, 1e-5 of the largest score)."""
    _, _, model, tokenizer = family
    model = model.to(dtype)
    try:
        batch = tokenizer(TEXTS)
        presets = ["attnlrp", "cp-lrp", "bert-lrp"]
        together = explain(model, batch, [f"lrp:{p}" for p in presets] + ["gi"])
        assert together.forward_passes == 1 and together.backward_passes == 1
        for preset in presets:
            method = f"lrp:{preset}"
            single = explain(model, batch, [method])
            by_rule = explain(model, batch, ["lrp"], rule=preset)
            for i in range(len(TEXTS)):
                assert_same(single.scores[method][i], together.scores[method][i], f"{preset}, text {i}", tolerance)
            torch.testing.assert_close(by_rule.scores["lrp"], single.scores[method], rtol=0, atol=0)
            torch.testing.assert_close(together.conservation[method], single.conservation[method],
                                       rtol=tolerance * 10, atol=tolerance)
    finally:
        model.float()


def test_in_float64_every_method_is_the_same_alone_and_in_a_padded_batch(family):
    name, _, model, tokenizer = family
    model = model.double()
    try:
        batch = tokenizer(TEXTS)
        batched = explain(model, batch, all_methods(), **OPTIONS)
        for i, text in enumerate(TEXTS):
            for method, scores in alone(model, tokenizer, text).items():
                assert_same(scores, batched.scores[method][i, :len(scores)], f"{name}, text {i}, {method}", 1e-10)
    finally:
        model.float()


def test_pair_words_stay_apart_without_token_types(tmp_path):
    """DistilBERT has no token types: the words of the two texts are told apart by sequence id,
    so occlusion of the first text's first word is that word's occlusion alone."""
    make_distilbert_dir(tmp_path / "model")
    model, tokenizer = load_model(tmp_path / "model")
    batch = tokenizer(["great film"], ["bad movie"])
    result = explain(model, batch, ["occlusion"], target=1)
    ids = batch["input_ids"].clone()
    assert batch["token_type_ids"].abs().sum() == 0
    with torch.no_grad():
        full = model(**batch).logits[0, 1]
        ids[0, 1] = model.config.pad_token_id  # "great" only
        without = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits[0, 1]
    assert float(result.scores["occlusion"][0, 1]) == pytest.approx(float(full - without), abs=1e-5)
    assert float(result.scores["occlusion"][0, 1]) != pytest.approx(float(result.scores["occlusion"][0, 4]), abs=1e-7)


def test_explain_texts_is_the_python_door_to_the_same_road(family):
    _, _, model, tokenizer = family
    explained = explain_texts(model, tokenizer, TEXTS[:2], methods=["lrp", "shap"], **OPTIONS)
    request = Request(methods=["lrp", "shap"], options=OPTIONS)
    again = explain_texts(model, tokenizer, TEXTS[:2], request)
    for first, second, text in zip(explained, again, TEXTS[:2]):
        reference = alone(model, tokenizer, text)
        for method in ("lrp", "shap"):
            assert_same(reference[method], first.label().scores[method], f"{text}: {method}")
            assert first.record() == second.record()


def test_every_road_refuses_a_word_for_a_sequence_classifier(tmp_path, capsys):
    folder = make_model_dir(tmp_path / "model")
    for output in (["--json", str(tmp_path / "out.json")], ["--jsonl", str(tmp_path / "out.jsonl")]):
        assert cli.main(["explain", "--model", str(folder), "--word", "film", *output, "the film"]) == 2
        assert "--word/--token-index need a token-classification model" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.json").exists()


def test_a_line_without_words_gets_a_record_on_every_method(tmp_path, capsys):
    """A line of control characters has no words (the tokenizer drops them): every method still
    gives a record (the perturbation methods score no word), with a warning, and the run goes on."""
    folder = make_model_dir(tmp_path / "model")
    write_tuned_composite(folder, TunedComposite(TUNED))
    data = tmp_path / "texts.txt"
    data.write_text("the film\n\x01\x02\x03\na bad movie\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli.main(["explain", "--model", str(folder), "--methods", ",".join(all_methods()), *flags(OPTIONS),
                     "--quiet", "--file", str(data), "--jsonl", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert records[1]["words"] == [] and records[1]["scores"]["shap"]["words"] == []
    assert "no words to explain" in capsys.readouterr().err
