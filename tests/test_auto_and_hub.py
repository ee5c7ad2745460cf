"""Auto classes, RoBERTa's byte-level BPE and the WordPiece tokenizers against transformers' fast
tokenizers on the same vocabulary files, and hub ids resolved from a local Hugging Face cache
(HF_HUB_OFFLINE=1: nothing is ever downloaded here)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import bert_lrp
from bert_lrp import explain

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

FIXTURES = Path(__file__).parent / "fixtures" / "sst2" / "dev_sample.tsv"
SPECIAL_BPE = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TEXTS = ["it 's a charming and often affecting journey .", "Unflinchingly bleak, and desperate!",
         "  leading   spaces and   tabs\tinside", "naïve café — résumé"]
PAIRS = ["a second text", "short", "and another one here", "x"]


def _lines(n: int = 200):
    rows = FIXTURES.read_text(encoding="utf-8").splitlines()[1:n + 1]
    return [row.split("\t")[0] for row in rows]


@pytest.fixture(scope="module")
def bpe_files(tmp_path_factory):
    """vocab.json + merges.txt of a small byte-level BPE trained on SST-2 sentences."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    folder = tmp_path_factory.mktemp("bpe")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_BPE,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_lines(), trainer)
    tokenizer.model.save(str(folder))
    return folder / "vocab.json", folder / "merges.txt"


@pytest.fixture(scope="module")
def wordpiece_vocab(tmp_path_factory):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    folder = tmp_path_factory.mktemp("wordpiece")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                        show_progress=False)
    tokenizer.train_from_iterator(_lines(), trainer)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    path = folder / "vocab.txt"
    path.write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    return path


def _same_encoding(ours, theirs, texts, pairs=None, types=False):
    mine = ours(texts, pairs) if pairs is not None else ours(texts)
    peer = theirs(texts, pairs, padding=True, return_tensors="pt", return_offsets_mapping=True) if pairs is not None \
        else theirs(texts, padding=True, return_tensors="pt", return_offsets_mapping=True)
    assert torch.equal(mine["input_ids"], peer["input_ids"])
    assert torch.equal(mine["attention_mask"], peer["attention_mask"])
    if types:
        assert torch.equal(mine["token_type_ids"], peer["token_type_ids"])
    else:  # transformers leaves them out; ours are all 0 so that model(**encoding) works everywhere
        assert not mine["token_type_ids"].any()
    special = torch.tensor([[t is None for t in row] for row in mine.word_ids])
    for row in range(len(texts)):
        peer_offsets = [tuple(o) for o in peer["offset_mapping"][row].tolist()]
        # transformers reports (0, 0) at special tokens and padding too
        assert mine.offsets[row] == [(0, 0) if s else o for o, s in zip(peer_offsets, special[row].tolist())]
        assert mine.word_ids[row] == [None if s else w for w, s in zip(peer.word_ids(row), special[row].tolist())]
    return mine


def test_roberta_bpe_from_vocab_and_merges_matches_transformers(bpe_files):
    vocab, merges = bpe_files
    ours = bert_lrp.RobertaTokenizer.from_files(vocab, merges)
    theirs = transformers.RobertaTokenizerFast(vocab=str(vocab), merges=str(merges))
    _same_encoding(ours, theirs, TEXTS)
    _same_encoding(ours, theirs, TEXTS, PAIRS)
    for text in _lines(60):
        assert ours.tokenize(text) == theirs.tokenize(text)


def test_roberta_bpe_from_tokenizer_json_and_auto_tokenizer(bpe_files, tmp_path):
    vocab, merges = bpe_files
    theirs = transformers.RobertaTokenizerFast(vocab=str(vocab), merges=str(merges))
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    ours = bert_lrp.AutoTokenizer.from_pretrained(tmp_path)  # no config.json: a BPE tokenizer.json is RoBERTa's
    assert isinstance(ours, bert_lrp.RobertaTokenizer)
    _same_encoding(ours, theirs, TEXTS, PAIRS)


def test_roberta_words_merge_leading_space_pieces(bpe_files):
    from bert_lrp.attribution.words import merge_word_pieces

    ours = bert_lrp.RobertaTokenizer.from_files(*bpe_files)
    text = "unflinchingly bleak and desperate"
    encoding = ours(text)
    words = merge_word_pieces(torch.ones(encoding["input_ids"].shape[1]), encoding, 0)
    assert [w["word"] for w in words] == text.split()
    assert sum(w["score"] for w in words) == encoding["input_ids"].shape[1] - 2
    assert any(len(w["pieces"]) > 1 for w in words)  # some word really is split into pieces


@pytest.mark.parametrize("model_type,peer", [("distilbert", "DistilBertTokenizerFast"),
                                              ("electra", "ElectraTokenizerFast"), ("bert", "BertTokenizerFast")])
def test_wordpiece_families_match_transformers(wordpiece_vocab, tmp_path, model_type, peer):
    shutil.copy(wordpiece_vocab, tmp_path / "vocab.txt")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    ours = bert_lrp.AutoTokenizer.from_pretrained(tmp_path)
    theirs = getattr(transformers, peer)(vocab=str(wordpiece_vocab), do_lower_case=True)
    types = "token_type_ids" in theirs("x")
    _same_encoding(ours, theirs, TEXTS, types=types)
    _same_encoding(ours, theirs, TEXTS, PAIRS, types=types)


# ------------------------------------------------------------------------------------- Auto
def _tiny(family: str, head: str):
    torch.manual_seed(0)
    configs = {
        "bert": lambda: transformers.BertConfig(vocab_size=400, hidden_size=24, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=32),
        "roberta": lambda: transformers.RobertaConfig(vocab_size=400, hidden_size=24, num_hidden_layers=1,
                                                      num_attention_heads=2, intermediate_size=32,
                                                      max_position_embeddings=40),
        "distilbert": lambda: transformers.DistilBertConfig(vocab_size=400, dim=24, n_layers=1, n_heads=2,
                                                            hidden_dim=32),
        "electra": lambda: transformers.ElectraConfig(vocab_size=400, embedding_size=16, hidden_size=24,
                                                      num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
    }
    name = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert", "electra": "Electra"}[family]
    return getattr(transformers, name + head)(configs[family]()).eval(), name


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra"])
@pytest.mark.parametrize("auto,head", [("AutoModelForSequenceClassification", "ForSequenceClassification"),
                                       ("AutoModelForTokenClassification", "ForTokenClassification"),
                                       ("AutoModel", "Model")])
def test_auto_models_dispatch_on_model_type(tmp_path, family, auto, head):
    peer, name = _tiny(family, head)
    peer.save_pretrained(tmp_path)
    ours = getattr(bert_lrp, auto).from_pretrained(tmp_path)
    assert type(ours).__name__ == name + head
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids)[0], peer(input_ids=ids)[0], rtol=0, atol=1e-5)


def test_auto_masked_lm_and_its_limits(tmp_path):
    peer, _ = _tiny("distilbert", "ForMaskedLM")
    peer.save_pretrained(tmp_path / "mlm")
    assert type(bert_lrp.AutoModelForMaskedLM.from_pretrained(tmp_path / "mlm")).__name__ == "DistilBertForMaskedLM"
    peer, _ = _tiny("electra", "Model")
    peer.save_pretrained(tmp_path / "electra")
    with pytest.raises(bert_lrp.ConfigError, match="no masked_lm model for model_type 'electra'"):
        bert_lrp.AutoModelForMaskedLM.from_pretrained(tmp_path / "electra")


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
    peer, _ = _tiny("bert", "ForSequenceClassification")
    peer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "gpt2"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(bert_lrp.ConfigError) as error:
        bert_lrp.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    message = str(error.value)
    assert "'gpt2'" in message and "bert, roberta, distilbert, electra" in message and "\n" not in message
    assert isinstance(error.value, bert_lrp.errors.BertLrpError)


# -------------------------------------------------------------------------------------- hub
def _fake_cache(root: Path, repo_id: str, files: Path, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """Lay ``files`` out as huggingface_hub does: blobs, snapshots/<commit>/ links, refs/main."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for index, path in enumerate(sorted(files.iterdir())):
        blob = repo / "blobs" / f"blob{index}"
        shutil.copy(path, blob)
        (snapshot / path.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # a hub id must not be found as a relative folder
    return cache


def test_hub_id_resolves_from_the_local_cache_offline(offline_cache, tmp_path, bpe_files):
    peer, _ = _tiny("roberta", "ForSequenceClassification")
    files = tmp_path / "files"
    peer.save_pretrained(files)
    transformers.RobertaTokenizerFast(vocab=str(bpe_files[0]), merges=str(bpe_files[1])).save_pretrained(files)
    snapshot = _fake_cache(offline_cache, "someone/tiny-roberta", files)
    model = bert_lrp.AutoModelForSequenceClassification.from_pretrained("someone/tiny-roberta")
    assert type(model).__name__ == "RobertaForSequenceClassification"
    direct = bert_lrp.RobertaForSequenceClassification.from_pretrained("someone/tiny-roberta")
    tokenizer = bert_lrp.AutoTokenizer.from_pretrained("someone/tiny-roberta")
    assert isinstance(tokenizer, bert_lrp.RobertaTokenizer)
    batch = tokenizer(["a charming journey", "bleak"])
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, direct(**batch).logits, rtol=0, atol=0)
    result = explain(model, batch, methods=["lrp"], rule="cp-lrp")
    assert (result.scores["lrp"][batch["attention_mask"] == 0] == 0).all()
    # HF_HUB_CACHE wins over HF_HOME, as in huggingface_hub
    from bert_lrp.models.hub import cached_snapshot

    assert Path(cached_snapshot("someone/tiny-roberta")) == snapshot


def test_hub_id_resolves_from_hf_hub_cache(tmp_path, monkeypatch):
    peer, _ = _tiny("distilbert", "ForSequenceClassification")
    peer.save_pretrained(tmp_path / "files")
    _fake_cache(tmp_path / "elsewhere", "org/distil", tmp_path / "files")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    model = bert_lrp.AutoModelForSequenceClassification.from_pretrained("org/distil")
    assert type(model).__name__ == "DistilBertForSequenceClassification"


def test_uncached_hub_id_offline_is_a_one_line_error(offline_cache):
    with pytest.raises(bert_lrp.HubError) as error:
        bert_lrp.AutoModelForSequenceClassification.from_pretrained("nobody/not-cached")
    message = str(error.value)
    assert "nobody/not-cached" in message and "HF_HUB_OFFLINE" in message and "\n" not in message
    assert isinstance(error.value, bert_lrp.errors.BertLrpError)


# -------------------------------------------------------------------------------------- CLI
def _classifier_folder(folder: Path, family: str, bpe_files, wordpiece_vocab) -> Path:
    peer, _ = _tiny(family, "ForSequenceClassification")
    peer.config.id2label, peer.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    peer.save_pretrained(folder)
    if family == "roberta":
        transformers.RobertaTokenizerFast(vocab=str(bpe_files[0]), merges=str(bpe_files[1])).save_pretrained(folder)
    else:
        shutil.copy(wordpiece_vocab, folder / "vocab.txt")
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return folder


@pytest.mark.parametrize("family", ["roberta", "distilbert", "electra"])
def test_cli_explain_takes_every_family(tmp_path, family, bpe_files, wordpiece_vocab):
    from bert_lrp import cli

    folder = _classifier_folder(tmp_path / family, family, bpe_files, wordpiece_vocab)
    out = tmp_path / "out.json"
    assert cli.main(["explain", "--model", str(folder), "--methods", "gs,gi,lrp", "--rule", "cp-lrp", "--color",
                     "none", "--json", str(out), "an often affecting journey", "bleak and desperate"]) == 0
    text = out.read_text()
    assert "journey" in text and "desperate" in text  # words merged back from the pieces


def test_cli_train_fine_tunes_distilbert_and_transformers_reads_the_result(tmp_path, bpe_files, wordpiece_vocab):
    from bert_lrp import cli

    folder = _classifier_folder(tmp_path / "distil", "distilbert", bpe_files, wordpiece_vocab)
    data = tmp_path / "train.tsv"
    data.write_text("\n".join(FIXTURES.read_text(encoding="utf-8").splitlines()[:33]) + "\n", encoding="utf-8")
    out = tmp_path / "trained"
    assert cli.main(["train", "--model", str(folder), "--train-file", str(data), "--output-dir", str(out),
                     "--epochs", "1", "--batch-size", "8", "--threads", "1"]) == 0
    ours = bert_lrp.AutoModelForSequenceClassification.from_pretrained(out)
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = bert_lrp.AutoTokenizer.from_pretrained(out)(["a charming journey", "bleak"])
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, theirs(input_ids=batch["input_ids"],
                                                                attention_mask=batch["attention_mask"]).logits,
                                   rtol=0, atol=1e-5)


def test_cli_explain_takes_a_cached_hub_id(offline_cache, tmp_path, bpe_files, wordpiece_vocab):
    from bert_lrp import cli

    files = _classifier_folder(tmp_path / "files", "roberta", bpe_files, wordpiece_vocab)
    _fake_cache(offline_cache, "someone/roberta-sst2", files)
    out = tmp_path / "out.json"
    assert cli.main(["explain", "--model", "someone/roberta-sst2", "--methods", "lrp", "--color", "none",
                     "--json", str(out), "an often affecting journey"]) == 0
    assert "journey" in out.read_text()
    assert cli.main(["explain", "--model", "someone/not-cached", "a text"]) != 0  # one-line error, no download
