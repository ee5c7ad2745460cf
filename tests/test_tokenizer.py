"""Our BertTokenizer encodes exactly as transformers' fast BERT tokenizer on the MiniLM
vocabulary: ids, token types, masks, pairs, truncation, padding, offsets."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bert_lrp import BertTokenizer, TokenizerError

transformers = pytest.importorskip(
    "transformers", reason="transformers (the reference tokenizer) is not installed")

SENTENCES = [
    "it 's a charming and often affecting journey . ",
    "Unflinchingly bleak and desperate",
    "The Café's crème brûlée costs $4.50 -- “worth it”!",
    "naïve 東京 tokenizers, e-mail:someone@example.com\tand\nnewlines",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
]
FIRST = ["a sometimes tedious film .", "the acting , costumes , music , cinematography and sound are all "
         "astounding given the production 's austere locales .", "short"]
SECOND = ["you 'll probably love it .", "it 's slow -- very , very slow .",
          "an extremely long second sentence that goes on and on with many words to force truncation"]
FIELDS = ("input_ids", "token_type_ids", "attention_mask")


@pytest.fixture(scope="module")
def ours(minilm_path) -> BertTokenizer:
    return BertTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def theirs(minilm_path):
    return transformers.AutoTokenizer.from_pretrained(minilm_path)


def assert_same_encoding(mine, reference) -> None:
    for name in FIELDS:
        assert torch.equal(mine[name], reference[name]), f"{name}:\n{mine[name]}\n{reference[name]}"


def test_reference_is_the_fast_tokenizer(theirs):
    assert theirs.is_fast


def test_single_texts_padded_to_the_longest_match(ours, theirs):
    assert_same_encoding(ours(SENTENCES), theirs(SENTENCES, padding=True, return_tensors="pt"))


def test_sentence_pairs_match_with_segment_ids(ours, theirs):
    mine = ours(FIRST, SECOND)
    assert_same_encoding(mine, theirs(FIRST, SECOND, padding=True, return_tensors="pt"))
    assert (mine["token_type_ids"] == 1).any()


@pytest.mark.parametrize("max_length", [8, 13, 20])
def test_pairs_truncated_longest_first_to_max_length_match(ours, theirs, max_length):
    mine = ours(FIRST, SECOND, max_length=max_length)
    reference = theirs(FIRST, SECOND, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    assert_same_encoding(mine, reference)
    assert mine["input_ids"].shape[1] <= max_length


def test_single_text_truncated_to_max_length_ends_with_sep(ours, theirs):
    mine = ours(SENTENCES, max_length=7)
    assert_same_encoding(mine, theirs(SENTENCES, truncation=True, max_length=7, padding=True, return_tensors="pt"))
    assert mine["input_ids"].shape[1] == 7 and (mine["input_ids"][:, -1] == ours.sep_token_id).all()


def test_padding_to_max_length_matches(ours, theirs):
    mine = ours(FIRST, padding="max_length", max_length=40)
    reference = theirs(FIRST, padding="max_length", max_length=40, truncation=True, return_tensors="pt")
    assert mine["input_ids"].shape == (3, 40)
    assert_same_encoding(mine, reference)


def test_padding_tokens_are_pad_id_with_zero_mask(ours):
    mine = ours(["short", "a somewhat longer text here"])
    padded = mine["attention_mask"] == 0
    assert padded[0].any() and not padded[1].any()
    assert (mine["input_ids"][padded] == ours.pad_token_id).all()


def test_offsets_word_ids_and_sequence_ids_match(ours, theirs):
    mine = ours(FIRST, SECOND)
    reference = theirs(FIRST, SECOND, padding=True, return_offsets_mapping=True)
    for row in range(len(FIRST)):
        assert mine.offsets[row] == [tuple(o) for o in reference["offset_mapping"][row]]
        assert mine.word_ids[row] == reference.word_ids(row)
        assert mine.sequence_ids[row] == reference.sequence_ids(row)


def test_offsets_point_at_the_characters_of_each_token(ours):
    text = "Unflinchingly bleak, desperate!"
    encoding = ours(text)
    pieces = [(token, text[start:end]) for token, (start, end) in zip(encoding.tokens[0], encoding.offsets[0])
              if (start, end) != (0, 0)]
    assert pieces == [(t, s) for t, s in pieces if t.removeprefix("##") == s.lower()]
    assert "".join(s for _, s in pieces) == text.replace(" ", "")
    assert encoding.offsets[0][0] == (0, 0) and encoding.offsets[0][-1] == (0, 0)  # [CLS], [SEP]


def test_offsets_of_the_second_text_index_into_the_second_text(ours):
    encoding = ours("first part", "Second Part")
    for token, (start, end), sequence in zip(encoding.tokens[0], encoding.offsets[0], encoding.sequence_ids[0]):
        if sequence == 1:
            assert "Second Part"[start:end].lower() == token.removeprefix("##")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"], ids=["empty", "spaces", "whitespace"])
def test_empty_text_raises_tokenizer_error(ours, text):
    with pytest.raises(TokenizerError, match="text 0 is empty"):
        ours(text)


def test_empty_pair_text_raises_tokenizer_error(ours):
    with pytest.raises(TokenizerError, match="pair text 1 is empty"):
        ours(["a", "b"], ["c", ""])


def test_text_longer_than_max_length_without_truncation_names_the_lengths(ours):
    with pytest.raises(TokenizerError, match=r"text 0 has 7 tokens, more than max_length 5"):
        ours("one two three four five", max_length=5, truncation=False)


def test_special_tokens_written_in_the_text_are_recognised(ours, theirs):
    """"[MASK]" typed into a text is the mask token (as for fill-mask inputs), not "[", "mask", "]"."""
    text = "the [MASK] is here"
    assert ours(text)["input_ids"][0].tolist() == theirs(text)["input_ids"]
    assert ours.mask_token_id in ours(text)["input_ids"][0].tolist()


def test_decode_joins_word_pieces_and_skips_special_tokens_like_transformers(ours, theirs):
    text = "it 's a charming journey . supercalifragilistic"
    ids = theirs(text)["input_ids"]
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
       .filter(lambda s: s.strip()))
def test_arbitrary_unicode_text_matches(ours, theirs, text):
    mine = ours(text, max_length=64)
    reference = theirs(text, truncation=True, max_length=64, return_tensors="pt", return_offsets_mapping=True)
    assert mine["input_ids"].tolist() == reference["input_ids"].tolist(), repr(text)
    assert mine.offsets[0] == [tuple(o) for o in reference["offset_mapping"][0].tolist()], repr(text)


def test_pre_split_words_match_with_word_ids(ours, theirs):
    words = [["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
             ["Peter", "Blackburn"]]
    mine = ours(words, is_split_into_words=True)
    reference = theirs(words, is_split_into_words=True, padding=True, return_tensors="pt")
    assert_same_encoding(mine, reference)
    assert mine.word_ids[0] == reference.word_ids(0) and mine.word_ids[1] == reference.word_ids(1)
