"""Bad inputs fail early with an error that names the problem and the numbers involved,
instead of an IndexError deep inside torch or a silently wrong result."""
from __future__ import annotations

import pytest
import torch

from bert_lrp import (BertConfig, BertForSequenceClassification, BertModel, BertTokenizer, ConfigError,
                      InputError, TokenizerError)


@pytest.fixture
def model(tiny_config):
    """Tiny model: vocab_size 99, max_position_embeddings 64, type_vocab_size 2."""
    return BertForSequenceClassification(tiny_config).eval()


def ids(*rows):
    return torch.tensor(rows, dtype=torch.long)


def test_token_id_at_vocab_size_names_the_id_position_and_vocab_size(model):
    with pytest.raises(InputError) as caught:
        model(ids([5, 6, 7], [8, 99, 9]))
    message = str(caught.value)
    assert "input_ids holds id 99 at position [1, 1]" in message
    assert "outside [0, 99)" in message and "vocab_size = 99" in message


def test_negative_token_id_is_refused(model):
    with pytest.raises(InputError, match=r"input_ids holds id -1 at position \[0, 2\], outside \[0, 99\)"):
        model(ids([5, 6, -1]))


def test_sequence_longer_than_max_position_embeddings_names_both_lengths(model):
    with pytest.raises(InputError, match=r"sequence length 65 exceeds max_position_embeddings 64"):
        model(torch.ones(1, 65, dtype=torch.long))


def test_sequence_of_exactly_max_position_embeddings_is_accepted(model):
    with torch.no_grad():
        assert model(torch.ones(2, 64, dtype=torch.long)).logits.shape == (2, 3)


def test_attention_mask_of_the_wrong_shape_names_both_shapes(model):
    with pytest.raises(InputError) as caught:
        model(ids([5, 6, 7], [8, 9, 10]), attention_mask=torch.ones(2, 4, dtype=torch.long))
    message = str(caught.value)
    assert "attention_mask has shape [2, 4]" in message and "expected [2, 3]" in message


def test_attention_mask_with_the_wrong_batch_size_is_refused(model):
    with pytest.raises(InputError, match=r"attention_mask has shape \[1, 3\], expected \[2, 3\]"):
        model(ids([5, 6, 7], [8, 9, 10]), attention_mask=torch.ones(1, 3, dtype=torch.long))


def test_token_type_ids_of_the_wrong_shape_name_both_shapes(model):
    with pytest.raises(InputError, match=r"token_type_ids has shape \[2, 2\], expected \[2, 3\]"):
        model(ids([5, 6, 7], [8, 9, 10]), token_type_ids=torch.zeros(2, 2, dtype=torch.long))


def test_token_type_id_beyond_type_vocab_size_is_refused(model):
    with pytest.raises(InputError, match=r"token_type_ids holds id 2 .* \(type_vocab_size = 2\)"):
        model(ids([5, 6, 7]), token_type_ids=ids([0, 1, 2]))


def test_floating_point_ids_are_refused_with_their_dtype(model):
    with pytest.raises(InputError, match="input_ids must hold integer ids, got dtype torch.float32"):
        model(torch.ones(1, 3))


def test_empty_input_ids_are_refused(model):
    with pytest.raises(InputError, match=r"input_ids is empty \(shape \(1, 0\)\)"):
        model(torch.zeros(1, 0, dtype=torch.long))


def test_missing_inputs_are_refused(model):
    with pytest.raises(InputError, match="give either input_ids or inputs_embeds"):
        model()


def test_misspelled_keyword_is_a_type_error_naming_it(model):
    with pytest.raises(TypeError, match="attention_masks"):
        model(ids([5, 6]), attention_masks=torch.ones(1, 2))


def test_empty_string_is_a_tokenizer_error(minilm_path):
    tokenizer = BertTokenizer.from_pretrained(minilm_path)
    with pytest.raises(TokenizerError, match="text 1 is empty; there is nothing to encode"):
        tokenizer(["a fine film", ""])


def test_hidden_size_not_divisible_by_heads_is_a_config_error_naming_the_numbers():
    with pytest.raises(ConfigError) as caught:
        BertConfig(hidden_size=384, num_attention_heads=10)
    assert "hidden_size 384 is not divisible by num_attention_heads 10 (remainder 4)" in str(caught.value)


def test_model_revalidates_a_config_edited_after_construction(tiny_config):
    tiny_config.num_attention_heads = 5  # hidden_size 32
    with pytest.raises(ConfigError, match=r"hidden_size 32 is not divisible by num_attention_heads 5"):
        BertModel(tiny_config)
