"""BertConfig reads both config formats, refuses inconsistent values with a precise message,
and survives a JSON round trip."""
from __future__ import annotations

import json

import pytest

from bert_lrp import BertConfig, ConfigError

GOOGLE_BERT_BASE = {  # bert_config.json as shipped with Google's uncased_L-12_H-768_A-12
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 30522,
}


# ---------------------------------------------------------------------------- reading
def test_reads_hugging_face_config_json(minilm_path):
    config = BertConfig.from_pretrained(minilm_path)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (6, 384, 12)
    assert (config.intermediate_size, config.vocab_size, config.head_size) == (1536, 30522, 32)
    assert config.layer_norm_eps == 1e-12 and config.hidden_act == "gelu"


def test_keeps_unknown_keys_of_config_json(minilm_path):
    config = BertConfig.from_pretrained(minilm_path)
    assert config.extra["position_embedding_type"] == "absolute"
    assert config.to_dict()["gradient_checkpointing"] is False


def test_reads_googles_bert_config_json_from_a_folder(tmp_path):
    (tmp_path / "bert_config.json").write_text(json.dumps(GOOGLE_BERT_BASE))
    config = BertConfig.from_pretrained(tmp_path)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (12, 768, 12)
    # fields Google's file lacks take BERT's defaults (TF BERT's LayerNorm epsilon is 1e-12)
    assert config.layer_norm_eps == 1e-12 and config.pad_token_id == 0


def test_prefers_config_json_over_bert_config_json(tmp_path):
    (tmp_path / "bert_config.json").write_text(json.dumps(GOOGLE_BERT_BASE))
    (tmp_path / "config.json").write_text(json.dumps({**GOOGLE_BERT_BASE, "num_hidden_layers": 4}))
    assert BertConfig.from_pretrained(tmp_path).num_hidden_layers == 4


def test_id2label_sets_the_number_of_labels():
    config = BertConfig(id2label={"0": "negative", "1": "neutral", "2": "positive"})
    assert config.num_labels == 3
    assert config.label2id == {"negative": 0, "neutral": 1, "positive": 2}


def test_overriding_num_labels_replaces_stale_label_names(tmp_path):
    BertConfig(id2label={0: "neg", 1: "pos"}).save_pretrained(tmp_path)
    config = BertConfig.from_pretrained(tmp_path, num_labels=5)
    assert config.num_labels == 5 and config.token_labels() == [f"LABEL_{i}" for i in range(5)]


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        BertConfig.from_json_file(tmp_path / "config.json")


def test_invalid_json_is_a_config_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        BertConfig.from_pretrained(tmp_path)


# ------------------------------------------------------------------------- validation
def test_hidden_size_not_divisible_by_heads_names_both_numbers():
    with pytest.raises(ConfigError) as caught:
        BertConfig(hidden_size=50, num_attention_heads=6)
    message = str(caught.value)
    assert "hidden_size 50" in message and "num_attention_heads 6" in message and "remainder 2" in message


@pytest.mark.parametrize("field", ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "intermediate_size", "max_position_embeddings", "type_vocab_size"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes_are_refused_with_field_and_value(field, value):
    with pytest.raises(ConfigError, match=rf"{field} must be a positive integer, got {value}"):
        BertConfig(**{field: value})


def test_fractional_size_is_refused():
    with pytest.raises(ConfigError, match=r"hidden_size must be a positive integer, got 768\.0"):
        BertConfig(hidden_size=768.0)


def test_unknown_activation_is_named():
    with pytest.raises(ConfigError, match=r"hidden_act 'swiglu' is not one of gelu, "):
        BertConfig(hidden_act="swiglu")


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_dropout_outside_unit_interval_is_refused(value):
    with pytest.raises(ConfigError, match=rf"hidden_dropout_prob must be in \[0, 1\), got {value}"):
        BertConfig(hidden_dropout_prob=value)


def test_unknown_problem_type_is_refused():
    with pytest.raises(ConfigError, match="problem_type 'ranking'"):
        BertConfig(problem_type="ranking")


def test_invalid_value_in_a_file_names_the_file_and_the_numbers(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**GOOGLE_BERT_BASE, "hidden_size": 100}))
    with pytest.raises(ConfigError) as caught:
        BertConfig.from_pretrained(tmp_path)
    assert "config.json" in str(caught.value) and "hidden_size 100" in str(caught.value)
    assert "num_attention_heads 12" in str(caught.value)


# ------------------------------------------------------------------------- round trip
def test_json_round_trip_is_lossless(tmp_path):
    config = BertConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, intermediate_size=50,
                        hidden_act="gelu_new", id2label={0: "O", 1: "B-PER", 2: "I-PER"},
                        problem_type="single_label_classification", extra={"custom": [1, 2]})
    config.save_pretrained(tmp_path)
    loaded = BertConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.id2label == {0: "O", 1: "B-PER", 2: "I-PER"} and loaded.extra["custom"] == [1, 2]


def test_to_json_string_parses_back_to_the_same_config():
    config = BertConfig(vocab_size=1000, layer_norm_eps=1e-7)
    parsed = BertConfig.from_dict(json.loads(config.to_json_string()))
    assert parsed.to_dict() == config.to_dict()
    assert (parsed.vocab_size, parsed.layer_norm_eps) == (1000, 1e-7)


def test_copy_changes_only_the_given_fields():
    config = BertConfig(hidden_size=48, num_attention_heads=6)
    changed = config.copy(num_hidden_layers=2)
    assert changed.num_hidden_layers == 2 and changed.hidden_size == 48 and config.num_hidden_layers == 12


def test_transformers_reads_our_config_json(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    ours = BertConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, intermediate_size=50,
                      id2label={0: "neg", 1: "pos"})
    ours.save_pretrained(tmp_path)
    theirs = transformers.BertConfig.from_pretrained(tmp_path)
    for name in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size",
                 "hidden_act", "layer_norm_eps", "max_position_embeddings", "type_vocab_size", "num_labels"):
        assert getattr(theirs, name) == getattr(ours, name), name
    assert theirs.id2label == {0: "neg", 1: "pos"}


def test_we_read_transformers_config_json(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    transformers.BertConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, intermediate_size=50,
                            num_labels=4, hidden_act="relu").save_pretrained(tmp_path)
    ours = BertConfig.from_pretrained(tmp_path)
    assert (ours.hidden_size, ours.num_attention_heads, ours.num_hidden_layers) == (48, 6, 3)
    assert ours.num_labels == 4 and ours.hidden_act == "relu"
