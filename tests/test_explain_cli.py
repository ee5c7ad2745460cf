"""``bert-lrp explain``: terminal, JSON and HTML output on a tiny random model; token classification."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from bert_lrp import BertConfig, BertForSequenceClassification, BertForTokenClassification
from bert_lrp import cli
from bert_lrp.cli import explain as explain_cli


def explain_command(*args) -> int:
    """``bert-lrp explain ARGS`` in-process, through the command line's error boundary."""
    return cli.main(["explain", *args])

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "film", "is", "great", "bad", "movie", "un",
         "##believ", "##able", "<", ">", "/", "script", "alert", "(", ")", "1", ".", ",", "'", "s", "and", "very",
         "good", "not", "boring", "paris", "moved", "to", "she", "in", "may", "&", "amp", "##s"]


def make_model_dir(path: Path, token: bool = False, seed: int = 0) -> Path:
    """A tiny random classifier (2 layers, hidden 32) with a 41-word vocabulary, saved to ``path``."""
    torch.manual_seed(seed)
    labels = {0: "O", 1: "B-LOC", 2: "I-LOC"} if token else {0: "negative", 1: "positive"}
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64, id2label=labels)
    model = (BertForTokenClassification if token else BertForSequenceClassification)(config)
    with torch.no_grad():  # larger weights than the 0.02 init, so that predictions are not all ties
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.3)
    model.eval()
    model.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def model_dir(tmp_path):
    return make_model_dir(tmp_path / "model")


def test_terminal_without_colour_shows_scores_in_brackets(model_dir, capsys):
    assert explain_cli.main(["--model", str(model_dir), "--methods", "lrp,gi,gs,lat,rollout,ig", "--ig-steps", "4",
                             "the film is unbelievable", "a bad movie"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # stdout is not a terminal
    assert "prediction:" in out and "positive" in out and "negative" in out
    assert "unbelievable[" in out and "movie[" in out
    for title in ("LRP", "GI", "GS", "LAT", "rollout", "IG"):
        assert title in out


def test_forced_truecolour(model_dir, capsys):
    assert explain_cli.main(["--model", str(model_dir), "--color", "truecolor", "a good film"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[48;2;" in out and "[+" not in out


def test_json_words_sum_their_pieces(model_dir, tmp_path):
    target = tmp_path / "out.json"
    assert explain_cli.main(["--model", str(model_dir), "--quiet", "--methods", "lrp,gi", "--json", str(target),
                             "--target", "negative", "the film is unbelievable"]) == 0
    payload = json.loads(target.read_text())
    example = payload["examples"][0]
    assert example["target"] == "negative"
    assert set(example["probabilities"]) == {"negative", "positive"}
    assert abs(sum(example["probabilities"].values()) - 1) < 1e-6
    assert example["tokens"] == ["[CLS]", "the", "film", "is", "un", "##believ", "##able", "[SEP]"]
    assert [w["word"] for w in example["words"]] == ["the", "film", "is", "unbelievable"]
    for method in ("lrp", "gradient_x_input"):
        tokens = example["scores"][method]["tokens"]
        scores = example["scores"][method]["words"]
        for word, score in zip(example["words"], scores):
            assert score == sum(tokens[p] for p in word["pieces"])  # exact: the same sum in the same order
    assert "lrp" in example["conservation"]


def test_stdin_and_file(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a good film\n\nthe movie is bad\n"))
    listing = tmp_path / "texts.txt"
    listing.write_text("very boring\n", encoding="utf-8")
    assert explain_cli.main(["--model", str(model_dir), "--methods", "gi", "--file", str(listing), "-"]) == 0
    out = capsys.readouterr().out
    assert out.count("prediction:") == 3 and "boring[" in out and "bad[" in out


def test_missing_default_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bert_lrp.models.loading.DEFAULT_MODEL", "checkpoints/no-such-model")
    assert explain_command("a film") == 2
    err = capsys.readouterr().err
    assert "checkpoints/no-such-model was not found" in err and "--model" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_method_and_label(model_dir, capsys):
    assert explain_command("--model", str(model_dir), "--methods", "deeplift", "a film") == 2
    assert explain_command("--model", str(model_dir), "--target", "neutral", "a film") == 2
    err = capsys.readouterr().err
    assert "--methods: unknown method 'deeplift'" in err and "--target: unknown label 'neutral'" in err


def test_pair_input(model_dir, tmp_path):
    target = tmp_path / "pair.json"
    assert explain_cli.main(["--model", str(model_dir), "--quiet", "--methods", "lrp", "--pair", "a bad movie",
                             "--json", str(target), "the film"]) == 0
    example = json.loads(target.read_text())["examples"][0]
    assert example["pair"] == "a bad movie"
    words = example["words"]
    assert [(w["word"], w["sequence"]) for w in words] == [("the", 0), ("film", 0), ("a", 1), ("bad", 1), ("movie", 1)]
    assert len(example["scores"]["lrp"]["words"]) == 5


def test_token_classification_word(tmp_path, capsys):
    model_dir = make_model_dir(tmp_path / "ner", token=True)
    target = tmp_path / "ner.json"
    assert explain_cli.main(["--model", str(model_dir), "--methods", "lrp,gi", "--word", "Paris",
                             "--json", str(target), "she moved to paris in may"]) == 0
    out = capsys.readouterr().out
    assert "word 3 'paris'" in out and "embedding part" in out and "*paris*[" in out
    example = json.loads(target.read_text())["examples"][0]
    assert example["target_word"] == {"index": 3, "word": "paris", "position": 4}
    assert example["target_position"] == 4
    shares = {part: values[3] for part, values in example["embedding_shares"]["lrp"].items()}
    assert set(shares) == {"word", "position", "token_type"}
    assert example["words"][3]["word"] == "paris"
    paris = example["scores"]["lrp"]["words"][3]
    assert sum(shares.values()) == pytest.approx(paris, rel=1e-5, abs=1e-6)


def test_token_classification_needs_a_word(tmp_path, capsys):
    model_dir = make_model_dir(tmp_path / "ner", token=True)
    assert explain_command("--model", str(model_dir), "she moved to paris") == 2
    assert explain_command("--model", str(model_dir), "--word", "london", "she moved to paris") == 2
    err = capsys.readouterr().err
    assert "--word: this is a token-classification model" in err and "--word 'london' is not a word" in err


def test_token_index_uses_first_piece(tmp_path):
    model_dir = make_model_dir(tmp_path / "ner", token=True)
    target = tmp_path / "ner.json"
    # tokens: [CLS] the un ##believ ##able film [SEP]; position 3 is a continuation piece of word 1
    assert explain_cli.main(["--model", str(model_dir), "--quiet", "--methods", "lrp", "--token-index", "3",
                             "--json", str(target), "the unbelievable film"]) == 0
    example = json.loads(target.read_text())["examples"][0]
    assert example["target_word"] == {"index": 1, "word": "unbelievable", "position": 2}
