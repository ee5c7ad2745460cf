"""Any tokenizer works everywhere, and a string is one text.

transformers' tokenizers (a test peer) — BERT fast and slow on the MiniLM SST-2 checkpoint's
vocabulary, RoBERTa's byte-level BPE, DistilBERT and ELECTRA on tiny random models (slow: a fast
tokenizer seen without its encodings where transformers has no slow one) — give the same scores
as bert-lrp's own tokenizer on the same vocabulary (1e-5 of the largest score), through
``explain()`` on the batch transformers returns and through ``explain_texts()`` given the
transformers tokenizer itself: the shared-pass methods, a word-level method (occlusion, SHAP) and
LAT, with the same words and word scores. Slow tokenizers carry no word ids: the rule that reads
them from the pieces (``bert_lrp.attribution.transformers_inputs``) gives the fast tokenizers'
words. Then the arguments of ``explain_texts`` as a specification: one string is one text, a
tuple is ``(text, pair)`` exactly, any iterable works, wrong kinds are a ``TypeError`` naming the
argument and the text (numbered from 1), wrong values a ``RequestError`` naming the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pytest
import torch

from bert_lrp import explain, explain_texts
from bert_lrp.attribution import registry
from bert_lrp.attribution.transformers_inputs import (TransformersTokenizer, as_encoding, tokenizer_for_road,
                                                      word_ids_from_pieces)
from bert_lrp.errors import RequestError, UsageError
from bert_lrp.models.loading import load_model

from test_explain_cli import VOCAB  # noqa: E402  (tests/ is on sys.path under pytest)
from test_one_road import make_distilbert_dir  # noqa: E402

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
MINILM = ROOT / "checkpoints" / "minilm-sst2"
SST2 = ROOT / "tests" / "fixtures" / "sst2" / "dev_sample.tsv"
SPECIAL_BPE = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

SHARED = ["gradient", "gradient_x_input", "lrp", "lrp:cp-lrp", "lrp:bert-lrp"]
OTHERS = ["occlusion", "shap", "lat"]
OPTIONS = {"shap_samples": 16, "shap_exact_words": 2, "seed": 3}
TOLERANCE = {"lrp:bert-lrp": 1e-4}  # its divisions amplify float32 rounding (see test_one_road.py)
# texts the tiny vocabulary spells (lower case: WordPiece words spelled from pieces match the text)
TINY_TEXTS = ["the unbelievable film is very good and not boring", "a bad movie"]
TINY_PAIRS = ["she moved to paris in may", "the film is great"]


def sst2_lines(count: int) -> List[str]:
    rows = SST2.read_text(encoding="utf-8").splitlines()[1:count + 1]
    return [row.split("\t")[0] for row in rows]


class SlowView:
    """A fast transformers tokenizer seen as a slow one: its batches carry ids only (no
    ``encodings``: no word ids, tokens or offsets). transformers 5 has no slow RoBERTa."""

    is_fast = False

    def __init__(self, fast) -> None:
        self.fast = fast

    def __getattr__(self, name: str):
        return getattr(self.fast, name)

    def __call__(self, *args, **kwargs):
        kwargs.pop("return_offsets_mapping", None)
        return transformers.BatchEncoding(dict(self.fast(*args, **kwargs)))


# ------------------------------------------------------------------ the models and their tokenizers
def _bpe_folder(folder: Path) -> Path:
    """vocab.json + merges.txt of a small byte-level BPE trained on SST-2 sentences."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_BPE,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(sst2_lines(200), trainer)
    tokenizer.model.save(str(folder))
    return folder


def _roberta_dir(folder: Path) -> Path:
    """A tiny random RoBERTa classifier with the BPE above (saved by transformers, read by ours)."""
    _bpe_folder(folder)
    theirs = transformers.RobertaTokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    torch.manual_seed(0)
    config = transformers.RobertaConfig(vocab_size=len(theirs), hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=37, max_position_embeddings=66,
                                        type_vocab_size=1, pad_token_id=theirs.pad_token_id, num_labels=2)
    model = transformers.RobertaForSequenceClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.3)
    model.save_pretrained(folder)
    return folder


def _electra_dir(folder: Path) -> Path:
    """A tiny random ELECTRA classifier (token types) on the tiny WordPiece vocabulary."""
    torch.manual_seed(0)
    config = transformers.ElectraConfig(vocab_size=len(VOCAB), embedding_size=24, hidden_size=32,
                                        num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                        max_position_embeddings=64, num_labels=2)
    model = transformers.ElectraForSequenceClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.3)
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """family -> (model, bert-lrp's tokenizer, transformers' fast tokenizer, slow tokenizer, texts, pairs)."""
    out = {}
    model, ours = load_model(MINILM)
    fast = transformers.AutoTokenizer.from_pretrained(MINILM)
    slow_class = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer)  # 5.x / 4.x
    slow = slow_class(vocab_file=str(MINILM / "vocab.txt"), do_lower_case=True)
    assert fast.is_fast and not slow.is_fast
    out["bert"] = (model, ours, fast, slow, ["A gripping, unbelievable film!", "not boring at all"],
                   ["the cast is great", "it's 2 hours long"])

    folder = _roberta_dir(tmp_path_factory.mktemp("roberta"))
    model, ours = load_model(folder)
    fast = transformers.RobertaTokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    out["roberta"] = (model, ours, fast, SlowView(fast), ["A charming, often affecting journey!", "it's bleak"],
                      ["a second text", "naïve café — 2 résumés"])

    folder = make_distilbert_dir(tmp_path_factory.mktemp("distilbert") / "model")
    model, ours = load_model(folder)
    fast = transformers.DistilBertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    out["distilbert"] = (model, ours, fast, SlowView(fast), TINY_TEXTS, TINY_PAIRS)

    folder = _electra_dir(tmp_path_factory.mktemp("electra"))
    model, ours = load_model(folder)
    fast = transformers.ElectraTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    out["electra"] = (model, ours, fast, SlowView(fast), TINY_TEXTS, TINY_PAIRS)
    return out


def assert_close(reference: torch.Tensor, other: torch.Tensor, where: str, method: str) -> None:
    assert other.shape == reference.shape, f"{where}: shape {tuple(other.shape)} vs {tuple(reference.shape)}"
    scale = max(float(reference.abs().max()), 1e-12)
    worst = float((other.double() - reference.double()).abs().max()) / scale
    assert worst <= TOLERANCE.get(method, 1e-5), f"{where}, {method}: differs by {worst:.2e} of the largest score"


def canonical(methods: List[str]) -> List[str]:
    return [registry.get(m).name for m in methods]


# ------------------------------------------------------------------ explain() on transformers' batch
@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra"])
@pytest.mark.parametrize("with_pairs", [False, True], ids=["single", "pairs"])
@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_explain_on_a_transformers_batch_equals_ours(families, family, with_pairs, kind):
    model, ours, fast, slow, texts, pairs = families[family]
    theirs = fast if kind == "fast" else slow
    pairs = pairs if with_pairs else None
    types = family in ("bert", "electra")  # bert-lrp gives RoBERTa and DistilBERT no token types (zeros)
    batch = theirs(texts, pairs, padding=True, return_tensors="pt", return_token_type_ids=types)
    if kind == "slow":  # a slow batch has ids only: its tokens come from the tokenizer
        assert batch.encodings is None
        batch = as_encoding(batch, theirs)
    reference = ours(texts, pairs) if pairs is not None else ours(texts)
    assert torch.equal(reference["input_ids"], batch["input_ids"])
    methods = SHARED + OTHERS
    expected = explain(model, reference, methods, **OPTIONS)
    result = explain(model, batch, methods, **OPTIONS)
    for method in canonical(methods):
        assert_close(expected.scores[method], result.scores[method], f"{family} {kind}", method)
        for row in range(len(texts)):
            mine, wanted = result.word_scores(method, row), expected.word_scores(method, row)
            # no texts in a batch: WordPiece words are spelled from their (lower-cased) pieces
            spell = (lambda word: word.lower()) if family != "roberta" else (lambda word: word)  # noqa: E731
            assert [w["word"] for w in mine] == [spell(w["word"]) for w in wanted]
            assert [w["positions"] for w in mine] == [w["positions"] for w in wanted]
            assert_close(torch.tensor([w["score"] for w in wanted]), torch.tensor([w["score"] for w in mine]),
                         f"{family} {kind} words of row {row + 1}", method)
    assert "<" in result._repr_html_()


def test_a_slow_batch_alone_is_read_as_a_dict_of_tensors(families):
    """Without its tokenizer a slow batch has no tokens: the shared-pass scores are the same, and
    each token is its own word (as for any dict of tensors)."""
    model, ours, _, slow, texts, pairs = families["bert"]
    batch = slow(texts, pairs, padding=True, return_tensors="pt", return_token_type_ids=True)
    plain = as_encoding(batch)
    assert type(plain) is dict and sorted(plain) == ["attention_mask", "input_ids", "token_type_ids"]
    expected = explain(model, ours(texts, pairs), ["lrp"])
    result = explain(model, batch, ["lrp"])
    assert_close(expected.scores["lrp"], result.scores["lrp"], "slow batch alone", "lrp")
    assert result.encoding is None


def test_a_fast_batch_without_texts_spells_words_from_its_pieces(families):
    """explain() sees no texts in a BatchEncoding: WordPiece words lose their case and accents,
    byte-level BPE words come back exactly."""
    model, _, fast, _, _, _ = families["roberta"]
    result = explain(model, fast(["Naïve, isn't it"], return_tensors="pt"), ["gradient"])
    assert [w["word"] for w in result.word_scores("gradient")] == ["Naïve", ",", "isn", "'t", "it"]
    model, _, fast, _, _, _ = families["bert"]
    result = explain(model, fast(["Naïve film"], return_tensors="pt"), ["gradient"])
    assert [w["word"] for w in result.word_scores("gradient")] == ["naive", "film"]


def test_a_batch_of_lists_is_read_like_a_batch_of_tensors(families):
    model, ours, fast, _, texts, _ = families["bert"]
    as_lists = explain(model, fast(texts, padding=True), ["gradient_x_input"])
    as_tensors = explain(model, fast(texts, padding=True, return_tensors="pt"), ["gradient_x_input"])
    assert torch.equal(as_lists.scores["gradient_x_input"], as_tensors.scores["gradient_x_input"])
    one = explain(model, fast(texts[0]), ["gradient_x_input"])  # one text, unbatched lists
    assert torch.allclose(one.scores["gradient_x_input"][0], as_tensors.scores["gradient_x_input"][0, :one.scores[
        "gradient_x_input"].shape[1]], atol=1e-5)


def test_an_unpadded_batch_of_lists_is_a_request_error_naming_the_batch(families):
    model, _, fast, _, _, _ = families["bert"]
    with pytest.raises(RequestError, match=r"different lengths \[\d+, \d+\].*padding=True") as caught:
        explain(model, fast(["a film", "a much longer film than that"]), ["gradient"])
    assert caught.value.field == "batch"


def test_an_encoding_and_a_dict_of_tensors_pass_unchanged(families):
    _, ours, _, _, texts, _ = families["bert"]
    encoding = ours(texts)
    plain = {key: encoding[key] for key in ("input_ids", "attention_mask")}
    assert as_encoding(encoding) is encoding and as_encoding(plain) is plain


# ------------------------------------------------------------------ explain_texts() with a transformers tokenizer
@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra"])
@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_explain_texts_with_a_transformers_tokenizer_equals_ours(families, family, kind):
    model, ours, fast, slow, texts, pairs = families[family]
    theirs = fast if kind == "fast" else slow
    inputs = [texts[0], (texts[1], pairs[1])]
    methods = SHARED + OTHERS
    expected = explain_texts(model, ours, inputs, methods=methods, options=OPTIONS)
    result = explain_texts(model, theirs, inputs, methods=methods, options=OPTIONS)
    for mine, wanted in zip(result, expected):
        assert mine.tokens == wanted.tokens
        assert mine.words() == wanted.words()  # spans of the original text, slow tokenizers too
        for method in canonical(methods):
            assert_close(wanted.label().scores[method], mine.label().scores[method], f"{family} {kind}", method)


@pytest.mark.parametrize("family", ["distilbert", "roberta"])
@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_a_long_text_takes_the_same_windows_with_a_transformers_tokenizer(families, family, kind):
    """RoBERTa's 66 positions read 64 tokens: the wrapped tokenizer knows it from the model."""
    model, ours, fast, slow, texts, _ = families[family]
    text = " ".join([texts[0]] * 9)  # more than 64 tokens
    methods = ["gradient_x_input", "lrp"]
    with pytest.warns(UserWarning, match="overlapping windows"):
        expected = explain_texts(model, ours, text, methods=methods)[0]
    with pytest.warns(UserWarning, match="overlapping windows"):
        result = explain_texts(model, fast if kind == "fast" else slow, text, methods=methods)[0]
    assert result.windows == expected.windows > 1
    assert result.tokens == expected.tokens
    for method in methods:
        assert_close(expected.label().scores[method], result.label().scores[method], "windows", method)


def test_a_text_too_long_for_a_token_classifier_is_cut_alike(tmp_path):
    from test_explain_cli import make_model_dir

    model, ours = load_model(make_model_dir(tmp_path / "model", token=True))
    fast = transformers.BertTokenizerFast(vocab=str(tmp_path / "model" / "vocab.txt"), do_lower_case=True)
    text = " ".join(["the film is great"] * 20)
    with pytest.warns(UserWarning, match="cut to 64"):
        expected = explain_texts(model, ours, text, methods=["gradient"], token_index=1)[0]
    with pytest.warns(UserWarning, match="cut to 64"):
        result = explain_texts(model, fast, text, methods=["gradient"], token_index=1)[0]
    assert result.tokens == expected.tokens
    assert_close(expected.label().scores["gradient"], result.label().scores["gradient"], "cut", "gradient")


def test_the_road_wraps_a_transformers_tokenizer_once_and_leaves_ours(families):
    model, ours, fast, _, _, _ = families["bert"]
    wrapped = tokenizer_for_road(fast, model)
    assert isinstance(wrapped, TransformersTokenizer) and wrapped.token_types
    assert tokenizer_for_road(wrapped, model) is wrapped and tokenizer_for_road(ours, model) is ours
    assert wrapped.pad_token_id == fast.pad_token_id and wrapped.mask_token == fast.mask_token
    roberta, _, roberta_fast, _, _, _ = families["roberta"]
    assert not tokenizer_for_road(roberta_fast, roberta).token_types


def test_the_explorer_answers_alike_with_a_transformers_tokenizer(families, tmp_path):
    from bert_lrp.views.explorer.explorer import Explorer

    model, ours, fast, _, texts, pairs = families["roberta"]
    body = {"text": texts[0], "pair": pairs[1], "methods": ["gi", "occlusion"]}
    expected = Explorer([(tmp_path, model, ours)]).explain(dict(body))["examples"][0]
    result = Explorer([(tmp_path, model, fast)]).explain(dict(body))["examples"][0]
    assert result["tokens"] == expected["tokens"] and result["words"] == expected["words"]
    for method in ("gradient_x_input", "occlusion"):
        assert_close(torch.tensor(expected["scores"][method]["tokens"]), torch.tensor(result["scores"][method]["tokens"]),
                     "explorer", method)


# ------------------------------------------------------------------ the rule of slow tokenizers
def _fast_words(fast, texts: List[str], pairs: Optional[List[str]] = None):
    batch = fast(texts, pairs, padding=True, return_special_tokens_mask=True)
    rows = []
    for row in range(len(texts)):
        special = batch["special_tokens_mask"][row]
        rows.append((batch.tokens(row), [None if s else q for q, s in zip(batch.sequence_ids(row), special)],
                     [None if s else w for w, s in zip(batch.word_ids(row), special)]))
    return rows


@pytest.mark.parametrize("family,scheme", [("bert", "wordpiece"), ("roberta", "byte_level")])
def test_word_ids_read_from_the_pieces_are_the_fast_tokenizers(families, family, scheme):
    fast = families[family][2]
    texts = sst2_lines(120) + ["it's 1.5 x2 a\n\nb don't ...!!", "  leading   spaces\tand tabs",
                               "naïve café — résumé ♥"]
    pairs = ["second text, with 3 words"] * len(texts)
    for tokens, sequences, words in _fast_words(fast, texts) + _fast_words(fast, texts, pairs):
        assert word_ids_from_pieces(tokens, sequences, scheme) == words, tokens


# ------------------------------------------------------------------ the arguments of explain_texts
@pytest.fixture(scope="module")
def tiny(families):
    model, ours, fast, _, _, _ = families["distilbert"]
    return model, ours, fast


def test_a_string_is_one_text(tiny):
    model, ours, _ = tiny
    (only,) = explain_texts(model, ours, "a bad movie", methods=["gradient"])
    assert only.text == "a bad movie" and only.pair is None and only.source == "text 1"


def test_a_string_of_pairs_is_the_pair_of_the_one_text(tiny):
    model, ours, _ = tiny
    (only,) = explain_texts(model, ours, "a bad movie", pairs="the film is great", methods=["gradient"])
    assert only.pair == "the film is great"
    assert [w["sequence"] for w in only.words()] == [0, 0, 0, 1, 1, 1, 1]


def test_any_iterable_of_texts_and_pairs_works(tiny):
    model, ours, _ = tiny
    items = [("a bad movie", "the film is great"), "the film is great"]
    from_list = explain_texts(model, ours, items, methods=["gradient"])
    from_generator = explain_texts(model, ours, (item for item in items), methods=["gradient"])
    assert [(e.text, e.pair) for e in from_generator] == [("a bad movie", "the film is great"),
                                                          ("the film is great", None)]
    for a, b in zip(from_list, from_generator):
        assert torch.equal(a.label().scores["gradient"], b.label().scores["gradient"])
    pairs = explain_texts(model, ours, iter(["a bad movie"]), pairs=iter(["the film is great"]), methods=["gradient"])
    assert pairs[0].pair == "the film is great"


@pytest.mark.parametrize("item,message", [
    (("a bad movie", "the film", "great"), r"texts: text 2 is a tuple of 3 items; a tuple must be \(text, pair\)"),
    (("a bad movie",), r"texts: text 2 is a tuple of 1 item; a tuple must be \(text, pair\)"),
    (7, r"texts: text 2 is an int \(7\); give a string, a \(text, pair\) tuple or a TextInput"),
    ((7, "the film"), r"texts: text 2 is an int \(7\), not a string"),
    (("a bad movie", 7), r"texts: the pair of text 2 is an int \(7\), not a string"),
    (["a", "list"], r"texts: text 2 is a list"),
])
def test_a_text_of_the_wrong_kind_is_a_type_error_naming_the_argument_and_the_text(tiny, item, message):
    model, ours, _ = tiny
    with pytest.raises(TypeError, match=message):
        explain_texts(model, ours, ["the film is great", item], methods=["gradient"])


@pytest.mark.parametrize("texts,message", [
    (b"a bad movie", r"texts: bytes, not text"),
    (5, r"texts: expected a string or an iterable of texts, got an int \(5\)"),
    ({"text": "a bad movie"}, r"texts: a dict .* is no list of texts"),
])
def test_texts_that_are_no_texts_are_a_type_error(tiny, texts, message):
    model, ours, _ = tiny
    with pytest.raises(TypeError, match=message):
        explain_texts(model, ours, texts, methods=["gradient"])


def test_a_pair_of_the_wrong_kind_is_a_type_error_naming_pairs(tiny):
    model, ours, _ = tiny
    with pytest.raises(TypeError, match=r"pairs: the pair of text 2 is a float \(1\.5\), not a string"):
        explain_texts(model, ours, ["a bad movie", "the film"], pairs=[None, 1.5], methods=["gradient"])


def test_a_wrong_number_of_pairs_is_a_request_error_on_pairs(tiny):
    model, ours, _ = tiny
    with pytest.raises(RequestError, match="got 2 texts but 1 pair texts") as caught:
        explain_texts(model, ours, ["a bad movie", "the film"], pairs="great", methods=["gradient"])
    assert caught.value.field == "pairs"


def test_a_pair_given_twice_is_a_request_error_on_pairs(tiny):
    model, ours, _ = tiny
    with pytest.raises(RequestError, match="text 1 has a pair already") as caught:
        explain_texts(model, ours, [("a bad movie", "great")], pairs=["the film"], methods=["gradient"])
    assert caught.value.field == "pairs"


@pytest.mark.parametrize("target", [True, False])
def test_a_bool_target_is_a_type_error(tiny, target):
    model, ours, _ = tiny
    with pytest.raises(TypeError, match=f"target: {target} is a bool, not a label"):
        explain_texts(model, ours, "a bad movie", methods=["gradient"], target=target)


@pytest.mark.parametrize("tokenizer", ["ours", "transformers"])
def test_messages_number_texts_from_one(tiny, tokenizer):
    model, ours, fast = tiny
    chosen = ours if tokenizer == "ours" else fast
    with pytest.raises(UsageError) as caught:
        explain_texts(model, chosen, ["a bad movie", "  "], methods=["gradient"])
    assert str(caught.value) == "text 2: the text is empty; there is nothing to explain"
    with pytest.raises(UsageError, match=r"^text 1: the pair text is empty"):
        explain_texts(model, chosen, [("a bad movie", "")], methods=["gradient"])


def test_explanations_of_a_transformers_tokenizer_write_the_same_json_records(tiny):
    model, ours, fast = tiny
    expected = explain_texts(model, ours, TINY_TEXTS, pairs=TINY_PAIRS, methods=["gradient_x_input"])
    result = explain_texts(model, fast, TINY_TEXTS, pairs=TINY_PAIRS, methods=["gradient_x_input"])
    for mine, wanted in zip(result, expected):
        mine_record, wanted_record = mine.record(), wanted.record()
        for key in ("text", "pair", "source", "prediction", "tokens", "words", "methods"):
            assert mine_record[key] == wanted_record[key], key
        mine_words = torch.tensor(mine_record["scores"]["gradient_x_input"]["words"])
        wanted_words = torch.tensor(wanted_record["scores"]["gradient_x_input"]["words"])
        assert_close(wanted_words, mine_words, "record", "gradient_x_input")
