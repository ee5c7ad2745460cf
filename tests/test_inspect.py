"""``bert-lrp inspect`` (masked-word view, embeddings across layers) and layer ablation
(``bert_lrp.ablate``, ``evaluate --skip-layers``, ``train --freeze-layers``).

Masked LMs are random: one built by transformers and saved to a temporary folder, and the
converted TensorFlow pre-training fixture (``tests/fixtures/tf_bert/tiny_pretraining``).
"""
from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from bert_lrp import BertForSequenceClassification, cli
from bert_lrp import ablate
from bert_lrp.inspection.embeddings import (
    anisotropy,
    cosine_matrix,
    embed_occurrences,
    embedding_report,
    pca_2d,
    word_occurrences,
)
from bert_lrp.models.loading import load_model
from bert_lrp.inspection.mask import load_masked_lm, masked_word_view
from bert_lrp.errors import RequestError, UsageError

from test_cli_errors import assert_one_line_error, run  # noqa: E402  (tests/ is on sys.path under pytest)
from test_explain_cli import make_model_dir  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PRETRAINING = FIXTURES / "tf_bert" / "tiny_pretraining"
SST2_SAMPLE = FIXTURES / "sst2" / "dev_sample.tsv"
TEXT = "the girl ran to a local pub to [MASK] the din of her city ."
TOL = 1e-5


def _hf_config(**changes) -> transformers.BertConfig:
    values = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
                  max_position_embeddings=64, attn_implementation="eager")
    values.update(changes)
    return transformers.BertConfig(**values)


def _spread(model: torch.nn.Module, seed: int) -> None:
    """Larger random weights than the 0.02 init, so that predictions are peaked (no near-ties)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2 or name.endswith("predictions.bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


@pytest.fixture(scope="module")
def hf_mlm(tmp_path_factory):
    """A random transformers BertForMaskedLM (eager attention) and the folder it was saved to."""
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(_hf_config()).eval()
    _spread(model, 1)
    folder = tmp_path_factory.mktemp("mlm") / "random-mlm"
    model.save_pretrained(folder)
    shutil.copy(PRETRAINING / "vocab.txt", folder / "vocab.txt")
    return model, folder


@pytest.fixture(scope="module")
def tf_mlm(tmp_path_factory) -> Path:
    """The TF pre-training fixture converted to a Hugging Face folder (BertForPreTraining)."""
    from bert_lrp.tf.convert import convert_tf_checkpoint

    out = tmp_path_factory.mktemp("tf") / "converted"
    convert_tf_checkpoint(PRETRAINING / "bert_model.ckpt", PRETRAINING / "bert_config.json", out,
                          vocab_path=PRETRAINING / "vocab.txt")
    return out


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("cls") / "tiny")


# ------------------------------------------------------------------ masked word
def test_masked_predictions_and_attention_equal_transformers(hf_mlm):
    hf_model, folder = hf_mlm
    model, tokenizer = load_masked_lm(folder)
    report = masked_word_view(model, tokenizer, TEXT, top_k=5)
    encoding = tokenizer(TEXT)
    with torch.no_grad():
        theirs = hf_model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                          token_type_ids=encoding["token_type_ids"], output_attentions=True)
        ours = model(**{k: encoding[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                     output_attentions=True)
    (mask,) = report["masks"]
    position = mask["position"]
    assert report["tokens"][position] == "[MASK]"
    probabilities = torch.softmax(theirs.logits[0, position].double(), -1)
    values, ids = probabilities.topk(5)
    assert [e["id"] for e in mask["output"]] == ids.tolist()
    assert np.abs(np.array([e["probability"] for e in mask["output"]]) - values.numpy()).max() <= TOL
    assert float((values[:-1] - values[1:]).min()) > 1e-4                # no near-ties: the order is defined
    # the logit lens at the last layer is the output
    last = mask["logit_lens"][-1]
    assert last["layer"] == 3 and len(mask["logit_lens"]) == 4
    assert [e["id"] for e in last["top"]] == ids.tolist()
    assert last["output_top_rank"] == 1
    for layer, entry in enumerate(mask["attention"], 1):
        assert entry["layer"] == layer and len(entry["heads"]) == 4
        for head, row in enumerate(entry["heads"]):
            expected = ours.attentions[layer - 1][0, head, position]
            assert np.abs(np.array(row["row"]) - expected.numpy()).max() <= TOL
            assert np.abs(np.array(row["row"]) - theirs.attentions[layer - 1][0, head, position].numpy()).max() <= TOL
            assert row["top"][0]["weight"] == pytest.approx(float(expected.max()), abs=1e-12)
        mean = ours.attentions[layer - 1][0, :, position].double().mean(0)
        assert np.abs(np.array(entry["mean"]["row"]) - mean.numpy()).max() <= 1e-12


def test_logit_lens_applies_the_model_head_to_each_hidden_state(hf_mlm):
    hf_model, folder = hf_mlm
    model, tokenizer = load_masked_lm(folder)
    report = masked_word_view(model, tokenizer, TEXT, top_k=3)
    encoding = tokenizer(TEXT)
    with torch.no_grad():
        hidden = hf_model.bert(**{k: encoding[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                               output_hidden_states=True).hidden_states
        position = report["masks"][0]["position"]
        for entry in report["masks"][0]["logit_lens"]:
            logits = hf_model.cls(hidden[entry["layer"]][:, position])[0]
            values, ids = torch.softmax(logits.double(), -1).topk(3)
            assert [e["id"] for e in entry["top"]] == ids.tolist()
            assert np.abs(np.array([e["probability"] for e in entry["top"]]) - values.numpy()).max() <= TOL


def test_mask_command_on_the_converted_tf_fixture_writes_json_and_html(tf_mlm, tmp_path, capsys):
    code, out, err = run(capsys, "inspect", "mask", "--model", tf_mlm, "--top-k", "3", "--json", tmp_path / "m.json",
                         "--html", tmp_path / "m.html", "--all-heads", "a film [MASK] the city .")
    assert code == 0, err
    payload = json.loads((tmp_path / "m.json").read_text())
    assert payload["model_class"] == "BertForPreTraining"
    assert len(payload["masks"][0]["logit_lens"]) == 3 and len(payload["masks"][0]["attention"]) == 2
    last, output = payload["masks"][0]["logit_lens"][-1]["top"], payload["masks"][0]["output"]
    assert [e["id"] for e in last] == [e["id"] for e in output]
    assert [e["probability"] for e in last] == pytest.approx([e["probability"] for e in output], abs=1e-7)
    page = (tmp_path / "m.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "logit lens" in page.lower() and "<script" not in page
    assert "logit lens" in out and "head 4" in out


def test_mask_command_errors_are_one_line(classifier_dir, hf_mlm, tmp_path, capsys):
    _, folder = hf_mlm
    code, _, err = run(capsys, "inspect", "mask", "--model", folder, "--json", tmp_path / "x.json", "no mask here")
    assert code == 2
    assert_one_line_error(err, "inspect", "[MASK]")
    code, _, err = run(capsys, "inspect", "mask", "--model", classifier_dir, "a [MASK] film")
    assert code == 2
    assert_one_line_error(err, "inspect", "BertForSequenceClassification", "bert-lrp convert")
    # a folder whose config names no architecture and whose weights have no masked-LM head
    bare = Path(shutil.copytree(classifier_dir, tmp_path / "bare"))
    config = json.loads((bare / "config.json").read_text())
    del config["architectures"]
    (bare / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, "inspect", "mask", "--model", bare, "a [MASK] film")
    assert code == 2
    assert_one_line_error(err, "inspect", "no masked-LM head", "cls.predictions")
    assert not (tmp_path / "x.json").exists()


# ------------------------------------------------------------------ embeddings
def test_anisotropy_equals_a_hand_computation():
    generator = torch.Generator().manual_seed(3)
    sample = torch.randn(6, 3, 5, generator=generator, dtype=torch.float64) + 0.5   # [n, layers, hidden]
    values = anisotropy(sample)
    for layer in range(3):
        total, pairs = 0.0, 0
        for i in range(6):
            for j in range(i + 1, 6):
                a, b = sample[i, layer].tolist(), sample[j, layer].tolist()
                dot = sum(x * y for x, y in zip(a, b))
                total += dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
                pairs += 1
        assert values[layer] == pytest.approx(total / pairs, abs=1e-12)


def test_pca_reproduces_numpy_svd():
    x = np.random.default_rng(0).normal(size=(9, 7))
    coordinates, ratios = pca_2d(x)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    for axis in range(2):
        sign = np.sign(expected[np.argmax(np.abs(expected[:, axis])), axis])
        assert np.abs(coordinates[:, axis] - sign * expected[:, axis]).max() <= 1e-10
        assert coordinates[np.argmax(np.abs(coordinates[:, axis])), axis] > 0
    assert np.allclose(ratios, s[:2] ** 2 / (s ** 2).sum())


def test_similarities_are_symmetric_and_one_on_identical_contexts(classifier_dir):
    model, tokenizer = load_model(classifier_dir, "encoder")
    sentences = ["the film is good", "a very bad film", "the film is good", "not a boring movie , a great film"]
    report = embedding_report(model, tokenizer, sentences, ["film", "movie"], samples=12, seed=1)
    film = report["per_word"]["film"]
    assert film["occurrences"] == 4 and len(film["matrices"]) == 3          # embedding output + 2 layers
    for layer, matrix in enumerate(film["matrices"]):
        m = np.array(matrix)
        assert np.abs(m - m.T).max() <= 1e-6 and np.abs(np.diag(m) - 1).max() <= 1e-6
        assert m[0, 2] == pytest.approx(1.0, abs=1e-6)                    # sentences 1 and 3 are identical
        upper = m[np.triu_indices(4, 1)]
        assert film["self_similarity"][layer] == pytest.approx(upper.mean(), abs=1e-5)
        assert film["corrected"][layer] == pytest.approx(film["self_similarity"][layer] - report["anisotropy"][layer])
    assert report["per_word"]["movie"]["self_similarity"] == [None] * 3     # one occurrence: no pair
    assert len(report["pca"][1]["points"]) == 5
    # the anisotropy sample is seeded: the same seed gives the same numbers, another seed others
    again = embedding_report(model, tokenizer, sentences, ["film"], samples=12, seed=1)
    other = embedding_report(model, tokenizer, sentences, ["film"], samples=12, seed=2)
    assert again["anisotropy"] == report["anisotropy"] and other["anisotropy"] != report["anisotropy"]


def test_a_word_of_several_pieces_is_the_mean_of_its_pieces(classifier_dir):
    model, tokenizer = load_model(classifier_dir, "encoder")
    sentences = ["the film is unbelievable"]
    encoding = tokenizer(sentences)
    words = word_occurrences(encoding, 0, 0, sentences[0])
    (word,) = [w for w in words if w.word == "unbelievable"]
    assert len(word.positions) == 3                                        # un ##believ ##able
    vectors = embed_occurrences(model, tokenizer, sentences, [word])
    with torch.no_grad():
        hidden = model(**{k: encoding[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                       output_hidden_states=True).hidden_states
    for layer, h in enumerate(hidden):
        expected = h[0, list(word.positions)].double().mean(0)
        assert torch.allclose(vectors[0, layer], expected, atol=1e-6)
    assert cosine_matrix(vectors[:, 1]).item() == pytest.approx(1.0)


def test_embeddings_command_writes_json_and_html_and_reports_missing_words(classifier_dir, tmp_path, capsys):
    text = tmp_path / "sentences.txt"
    text.write_text("the film is good\na bad film\n\nthe movie is great\na film and a movie\n", encoding="utf-8")
    code, out, err = run(capsys, "inspect", "embeddings", "--model", classifier_dir, "--file", text, "--words",
                         "film,movie", "--samples", "8", "--json", tmp_path / "e.json", "--html", tmp_path / "e.html")
    assert code == 0, err
    payload = json.loads((tmp_path / "e.json").read_text())
    assert payload["words"] == ["film", "movie"] and len(payload["anisotropy"]) == 3
    assert payload["per_word"]["film"]["occurrences"] == 3 and "film|movie" in payload["between"]
    page = (tmp_path / "e.html").read_text()
    assert page.count("<svg") == 1 + 3 and "<script" not in page
    assert "anisotropy" in out
    # a TSV with a sentence column (as SST-2's dev.tsv) is read by its sentence column
    code, _, err = run(capsys, "inspect", "embeddings", "--model", classifier_dir, "--file", SST2_SAMPLE,
                       "--words", "film", "--samples", "20", "--quiet", "--json", tmp_path / "tsv.json")
    assert code == 0, err
    assert json.loads((tmp_path / "tsv.json").read_text())["sentences"] == 200
    code, _, err = run(capsys, "inspect", "embeddings", "--model", classifier_dir, "--file", text, "--words",
                       "film,bank", "--json", tmp_path / "bad.json")
    assert code == 2
    assert_one_line_error(err, "inspect", "'bank'", str(text))
    assert not (tmp_path / "bad.json").exists()
    code, _, err = run(capsys, "inspect", "embeddings", "--model", classifier_dir, "--file", tmp_path / "none.txt",
                       "--words", "film")
    assert code == 2
    assert_one_line_error(err, "inspect", "none.txt", "no such file")


# ------------------------------------------------------------------ ablation
@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """transformers' and our BertForSequenceClassification with the same random weights."""
    torch.manual_seed(0)
    theirs = transformers.BertForSequenceClassification(_hf_config(num_labels=3)).eval()
    _spread(theirs, 2)
    folder = tmp_path_factory.mktemp("seq") / "model"
    theirs.save_pretrained(folder)
    return theirs, BertForSequenceClassification.from_pretrained(folder)


def _batch():
    ids = torch.tensor([[2, 11, 12, 13, 14, 15, 3], [2, 20, 21, 22, 3, 0, 0]])
    mask = (ids != 0).long()
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_skipping_no_layer_changes_nothing(classifiers):
    _, ours = classifiers
    with torch.no_grad():
        before = ours(**_batch()).logits
        with ablate.skip_layers(ours, []):
            same = ours(**_batch()).logits
    assert torch.equal(before, same)


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_skipping_layer_k_equals_transformers_without_layer_k(classifiers, layer):
    theirs, ours = classifiers
    reduced = copy.deepcopy(theirs)
    del reduced.bert.encoder.layer[layer - 1]
    reduced.config.num_hidden_layers -= 1
    layers = ours.bert.encoder.layer
    with torch.no_grad():
        expected = reduced(**_batch(), output_hidden_states=True)
        with ablate.skip_layers(ours, [layer]) as model:
            assert model.config.num_hidden_layers == 2 and len(ours.bert.encoder.layer) == 2
            got = ours(**_batch(), output_hidden_states=True)
        full = ours(**_batch()).logits
        reference = theirs(**_batch()).logits
    assert float((got.logits - expected.logits).abs().max()) <= TOL
    assert len(got.hidden_states) == 3
    assert ours.bert.encoder.layer is layers and ours.config.num_hidden_layers == 3     # restored
    assert float((full - reference).abs().max()) <= TOL


def test_skip_layers_restores_after_an_error_and_checks_numbers(classifiers):
    _, ours = classifiers
    layers = ours.bert.encoder.layer
    with pytest.raises(RuntimeError):
        with ablate.skip_layers(ours, [1, 3]):
            assert len(ours.bert.encoder.layer) == 1
            raise RuntimeError("inside")
    assert ours.bert.encoder.layer is layers and ours.config.num_hidden_layers == 3
    with pytest.raises(UsageError, match="layer 4 does not exist; the model has layers 1..3"):
        with ablate.skip_layers(ours, [4], "skip_layers"):
            pass
    assert ablate.parse_layers("1-2, 6", "x") == [1, 2, 6]
    for bad in ("0", "a", "3-1", ""):
        with pytest.raises(RequestError, match="^x: ") as caught:  # the field; the command line shows its flag
            ablate.parse_layers(bad, "x", 6)
        assert caught.value.field == "x" and "--" not in caught.value.message


def test_freeze_layers_sets_requires_grad_only_there(tmp_path):
    model = BertForSequenceClassification.from_pretrained(make_model_dir(tmp_path / "m"))
    names = ablate.freeze_layers(model, [2])
    assert names and all(n.startswith("bert.encoder.layer.1.") for n in names)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(names)


def test_evaluate_skip_layers_reports_accuracy_without_the_layer(classifier_dir, tmp_path, capsys):
    code, out, err = run(capsys, "evaluate", "--model", classifier_dir, "--data", SST2_SAMPLE, "--limit", "6",
                         "--methods", "gs", "--out", tmp_path / "run", "--skip-layers", "2", "--no-progress")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["settings"]["skip_layers"] == [2]
    assert "Layers skipped: 2" in (tmp_path / "run" / "results.md").read_text()
    model, tokenizer = load_model(classifier_dir)
    expected = ablate.accuracy(model, tokenizer, str(SST2_SAMPLE), skip=[2], limit=6)
    assert summary["accuracy"] == pytest.approx(expected["accuracy"])
    code, _, err = run(capsys, "evaluate", "--model", classifier_dir, "--data", SST2_SAMPLE, "--limit", "2",
                       "--methods", "gs", "--out", tmp_path / "bad", "--skip-layers", "3")
    assert code == 2
    assert_one_line_error(err, "evaluate", "--skip-layers", "layer 3 does not exist")
    assert not (tmp_path / "bad").exists()


def test_train_freeze_layers_keeps_those_weights(tmp_path):
    from safetensors.torch import load_file

    from bert_lrp.cli.train import train_main
    from test_training import make_tokenizer, tiny_config, write_sentiment  # noqa: E402

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    make_tokenizer(model_dir)
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_config()).save_pretrained(model_dir)
    train_file = write_sentiment(tmp_path / "train.tsv", 16, 1)
    assert train_main(["--train-file", str(train_file), "--model", str(model_dir), "--output-dir",
                       str(tmp_path / "out"), "--batch-size", "8", "--max-steps", "2", "--learning-rate", "1e-2",
                       "--freeze-layers", "1", "--no-progress"]) == 0
    before, after = load_file(str(model_dir / "model.safetensors")), load_file(str(tmp_path / "out" /
                                                                                     "model.safetensors"))
    first = [k for k in before if k.startswith("bert.encoder.layer.0.")]
    second = [k for k in before if k.startswith("bert.encoder.layer.1.")]
    assert first and all(torch.equal(before[k], after[k]) for k in first)
    assert any(not torch.equal(before[k], after[k]) for k in second)
    code = cli.main(["train", "--train-file", str(train_file), "--model", str(model_dir), "--output-dir",
                     str(tmp_path / "out2"), "--freeze-layers", "7", "--no-progress"])
    assert code == 2
