"""Tests of the Google-BERT TensorFlow checkpoint converter against TensorFlow/transformers fixtures."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bert_lrp.cli.convert import convert_main, inspect_main
from bert_lrp.tf.bundle import TFCheckpointReader
from bert_lrp.tf.convert import (
    ConversionError,
    convert_tf_checkpoint,
    convert_tf_to_model,
    plan_conversion,
    tf_to_hf_name,
)
from bert_lrp.tf.bundle import CheckpointFormatError, ChecksumError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tf_bert"
PRETRAINING = FIXTURES / "tiny_pretraining"
CLASSIFIER = FIXTURES / "tiny_classifier"
CORRUPTED = FIXTURES / "corrupted"
PT_PREFIX = PRETRAINING / "bert_model.ckpt"
CLS_PREFIX = CLASSIFIER / "model.ckpt-678"
CONFIG = PRETRAINING / "bert_config.json"
INPUTS = ("input_ids", "token_type_ids", "attention_mask")



def _batches(folder: Path):
    ref = np.load(folder / "reference_outputs.npz")
    for i in range(3):
        inputs = {k: torch.from_numpy(ref[f"batch{i}_{k}"]) for k in INPUTS}
        expected = {k[len(f"batch{i}_"):]: ref[k] for k in ref.files
                    if k.startswith(f"batch{i}_") and ref[k].dtype == np.float32}
        yield inputs, expected


def _max_diff(actual: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(actual.shape) == expected.shape
    return float(np.abs(actual.detach().numpy() - expected).max())


def _leftovers(out: Path):
    """Anything at ``out`` or a temporary sibling of it."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name) or
                  p.name.startswith("." + out.name))


@pytest.fixture(scope="module")
def pretraining_model():
    model, report = convert_tf_to_model(PT_PREFIX, CONFIG)
    return model, report


@pytest.fixture(scope="module")
def classifier_model():
    return convert_tf_to_model(CLS_PREFIX, CLASSIFIER / "bert_config.json")


# ---------------------------------------------------------------------------------------------
# Name mapping
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tf_name, hf_name, transpose", [
    ("bert/embeddings/word_embeddings", "bert.embeddings.word_embeddings.weight", False),
    ("bert/embeddings/token_type_embeddings", "bert.embeddings.token_type_embeddings.weight", False),
    ("bert/embeddings/LayerNorm/gamma", "bert.embeddings.LayerNorm.weight", False),
    ("bert/encoder/layer_11/attention/self/query/kernel", "bert.encoder.layer.11.attention.self.query.weight", True),
    ("bert/encoder/layer_0/attention/self/value/bias", "bert.encoder.layer.0.attention.self.value.bias", False),
    ("bert/encoder/layer_2/attention/output/dense/kernel", "bert.encoder.layer.2.attention.output.dense.weight", True),
    ("bert/encoder/layer_2/attention/output/LayerNorm/beta", "bert.encoder.layer.2.attention.output.LayerNorm.bias",
     False),
    ("bert/encoder/layer_3/intermediate/dense/kernel", "bert.encoder.layer.3.intermediate.dense.weight", True),
    ("bert/encoder/layer_3/output/dense/bias", "bert.encoder.layer.3.output.dense.bias", False),
    ("bert/encoder/layer_3/output/LayerNorm/gamma", "bert.encoder.layer.3.output.LayerNorm.weight", False),
    ("bert/pooler/dense/kernel", "bert.pooler.dense.weight", True),
    ("cls/predictions/transform/dense/kernel", "cls.predictions.transform.dense.weight", True),
    ("cls/predictions/transform/LayerNorm/beta", "cls.predictions.transform.LayerNorm.bias", False),
    ("cls/predictions/output_bias", "cls.predictions.bias", False),
    ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight", False),
    ("cls/seq_relationship/output_bias", "cls.seq_relationship.bias", False),
    ("output_weights", "classifier.weight", False),
    ("output_bias", "classifier.bias", False),
    ("bert/pooler/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE", "bert.pooler.dense.weight", True),
])
def test_google_names_map_to_hugging_face_names(tf_name, hf_name, transpose):
    assert tf_to_hf_name(tf_name) == (hf_name, transpose)


@pytest.mark.parametrize("name", [
    "bert/pooler/dense/kernel/adam_m", "bert/pooler/dense/kernel/adam_v", "global_step",
    "bert/pooler/dense/bias/AdamWeightDecayOptimizer", "_CHECKPOINTABLE_OBJECT_GRAPH",
    "save_counter/.ATTRIBUTES/VARIABLE_VALUE", "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE",
    "bert/pooler/dense/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE",
])
def test_training_state_is_skipped(name):
    plan = plan_conversion([name])
    assert plan.skipped == [name] and not plan.mapping and not plan.unmapped


@pytest.mark.parametrize("name", ["cls/squad/output_weights", "bert/encoder/layer_0/attention/self/query/weights",
                                  "bert/encoder/layer_x/output/dense/kernel", "bert/embeddings/extra"])
def test_unknown_names_are_reported_as_unmapped(name):
    assert plan_conversion([name]).unmapped == [name]


# ---------------------------------------------------------------------------------------------
# Converted weights and outputs
# ---------------------------------------------------------------------------------------------


def test_pretraining_weights_equal_tensorflow_values(pretraining_model):
    model, report = pretraining_model
    tf_values = np.load(PRETRAINING / "tf_variables.npz")
    state = model.state_dict()
    assert len(report.loaded) == len(state) == 46
    for tf_name, key in report.loaded.items():
        expected = tf_values[tf_name].T if tf_name.endswith("kernel") else tf_values[tf_name]
        assert np.array_equal(state[key].numpy(), expected), tf_name


def test_pretraining_checkpoint_skips_exactly_the_optimizer_state(pretraining_model):
    _, report = pretraining_model
    assert report.head == "pretraining" and report.unmapped == []
    assert len(report.skipped) == 93 and "global_step" in report.skipped
    assert all(n == "global_step" or n.endswith(("/adam_m", "/adam_v")) for n in report.skipped)


def test_pretraining_outputs_match_transformers_reference(pretraining_model):
    model, _ = pretraining_model
    for inputs, expected in _batches(PRETRAINING):
        with torch.no_grad():
            encoded = model.bert(**inputs)
            heads = model(**inputs)
        assert _max_diff(encoded.last_hidden_state, expected["last_hidden_state"]) <= 1e-5
        assert _max_diff(encoded.pooler_output, expected["pooler_output"]) <= 1e-5
        assert _max_diff(heads.prediction_logits, expected["prediction_logits"]) <= 1e-5
        assert _max_diff(heads.seq_relationship_logits, expected["seq_relationship_logits"]) <= 1e-5


def test_classifier_head_and_num_labels_are_inferred(classifier_model):
    model, report = classifier_model
    assert report.head == "classifier" and type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == 3
    np.testing.assert_array_equal(model.classifier.weight.detach().numpy(),
                                  np.load(CLASSIFIER / "tf_variables.npz")["output_weights"])


def test_classifier_outputs_match_transformers_reference(classifier_model):
    model, _ = classifier_model
    for inputs, expected in _batches(CLASSIFIER):
        with torch.no_grad():
            encoded = model.bert(**inputs)
            logits = model(**inputs).logits
        assert _max_diff(encoded.last_hidden_state, expected["last_hidden_state"]) <= 1e-5
        assert _max_diff(encoded.pooler_output, expected["pooler_output"]) <= 1e-5
        assert _max_diff(logits, expected["logits"]) <= 1e-5


def test_encoder_only_conversion_reports_unused_heads():
    with pytest.warns(UserWarning, match="not used by the BertModel"):
        model, report = convert_tf_to_model(PT_PREFIX, CONFIG, head="none")
    assert type(model).__name__ == "BertModel"
    assert len(report.unmapped) == 7 and all(n.startswith("cls/") for n in report.unmapped)


def test_requesting_a_head_the_checkpoint_lacks_is_an_error():
    with pytest.raises(ConversionError, match=r"no value for model parameter.*cls\.seq_relationship\.weight"):
        convert_tf_to_model(CLS_PREFIX, CLASSIFIER / "bert_config.json", head="pretraining")


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    config = json.loads(CONFIG.read_text())
    config["intermediate_size"] = 40
    (tmp_path / "bert_config.json").write_text(json.dumps(config))
    expected = (r"'bert/encoder/layer_0/intermediate/dense/bias' has shape \[37\]"
                r".*'bert\.encoder\.layer\.0\.intermediate\.dense\.bias' has shape \[40\]")
    with pytest.raises(ConversionError, match=expected):
        convert_tf_to_model(PT_PREFIX, tmp_path / "bert_config.json")


def _bundle_writer():
    """``write_bundle`` from the reader tests (loaded by path, whatever pytest's import mode)."""
    path = Path(__file__).with_name("test_tf_checkpoint.py")
    spec = importlib.util.spec_from_file_location("_tf_bundle_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_bundle


_DTYPE_ENUMS = {np.dtype(np.float32): 1, np.dtype(np.float16): 19, np.dtype(np.int64): 9}


def _rewrite_fixture(prefix: Path, rename, dtype=None, num_shards: int = 1, extra=None) -> None:
    """Re-save the classifier fixture's variables under new names / dtype / shard layout."""
    tensors = {}
    for i, (name, value) in enumerate(np.load(CLASSIFIER / "tf_variables.npz").items()):
        if dtype is not None and value.dtype == np.float32:
            value = value.astype(dtype)
        tensors[rename(name)] = (_DTYPE_ENUMS[value.dtype], value.shape, value.tobytes(), i % num_shards)
    tensors.update(extra or {})
    _bundle_writer()(prefix, tensors, num_shards=num_shards)


def _object_graph_written_by_tensorflow():
    """``(bytes, crc32c)`` of the object graph (a DT_STRING scalar) of the checkpoint real
    TensorFlow 2 wrote in tests/fixtures/tf2_object: its layout and its stored checksum."""
    from bert_lrp.tf.bundle import unmask_crc

    reader = TFCheckpointReader(Path(__file__).parent / "fixtures" / "tf2_object" / "ckpt-1")
    info = reader.info("_CHECKPOINTABLE_OBJECT_GRAPH")
    with open(reader.shard_path(info.shard_id), "rb") as handle:
        handle.seek(info.offset)
        return handle.read(info.size), unmask_crc(info.masked_crc)


def test_tf2_object_based_names_across_shards_convert_to_reference_logits(tmp_path):
    graph = _object_graph_written_by_tensorflow()
    extra = {"_CHECKPOINTABLE_OBJECT_GRAPH": (7, (), *graph[:1], 0, graph[1]),
             "save_counter/.ATTRIBUTES/VARIABLE_VALUE": (9, (), np.int64(1).tobytes(), 1)}
    _rewrite_fixture(tmp_path / "ckpt", lambda n: n + "/.ATTRIBUTES/VARIABLE_VALUE", num_shards=3, extra=extra)
    model, report = convert_tf_to_model(tmp_path / "ckpt", CLASSIFIER / "bert_config.json")
    assert report.head == "classifier" and report.unmapped == []
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in report.skipped
    inputs, expected = next(_batches(CLASSIFIER))
    with torch.no_grad():
        assert _max_diff(model(**inputs).logits, expected["logits"]) <= 1e-5


def test_float16_checkpoint_is_upcast_into_float32_parameters(tmp_path):
    _rewrite_fixture(tmp_path / "ckpt", lambda n: n, dtype=np.float16)
    model, _ = convert_tf_to_model(tmp_path / "ckpt", CLASSIFIER / "bert_config.json")
    stored = np.load(CLASSIFIER / "tf_variables.npz")["bert/pooler/dense/kernel"].astype(np.float16)
    weight = model.bert.pooler.dense.weight
    assert weight.dtype == torch.float32
    np.testing.assert_array_equal(weight.detach().numpy(), stored.T.astype(np.float32))


def test_shape_mismatch_is_found_from_the_index_before_reading_data(tmp_path):
    shutil.copy(PT_PREFIX.with_name("bert_model.ckpt.index"), tmp_path / "ckpt.index")  # no data file
    config = json.loads(CONFIG.read_text())
    config["hidden_size"], config["num_attention_heads"] = 64, 4
    (tmp_path / "bert_config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"LayerNorm/beta. has shape \[32\] but .* has shape \[64\]"):
        convert_tf_to_model(tmp_path / "ckpt", tmp_path / "bert_config.json")


# ---------------------------------------------------------------------------------------------
# Output folders: atomic, nothing left behind on failure
# ---------------------------------------------------------------------------------------------


def test_convert_writes_a_complete_hugging_face_folder(tmp_path):
    out = Path(convert_tf_checkpoint(PT_PREFIX, CONFIG, tmp_path / "out", vocab_path=PRETRAINING / "vocab.txt"))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    assert _leftovers(tmp_path / "out") == ["out"]


@pytest.mark.parametrize("case, error, match", [
    ("bitflip_data", ChecksumError, "bert/encoder/layer_0/attention/self/query/kernel"),
    ("truncated_index", CheckpointFormatError, "bad magic"),
])
def test_corrupted_checkpoints_fail_without_output(tmp_path, case, error, match):
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        convert_tf_checkpoint(CORRUPTED / case / "bert_model.ckpt", CONFIG, out)
    assert _leftovers(out) == []


def test_truncated_fixture_is_refused_unless_damaged_skipped_tensors_are_accepted(tmp_path):
    prefix = CORRUPTED / "truncated_data" / "bert_model.ckpt"
    with pytest.raises(CheckpointFormatError, match=r"the index needs 255164 bytes, the file has 255028 bytes"):
        convert_tf_checkpoint(prefix, CONFIG, tmp_path / "out")
    assert _leftovers(tmp_path / "out") == []
    with pytest.warns(UserWarning, match="output_weights/adam_v"):
        out = convert_tf_checkpoint(prefix, CONFIG, tmp_path / "out", accept_damaged_skipped=True)
    assert (Path(out) / "model.safetensors").is_file()


def test_data_truncated_inside_a_weight_fails_without_output(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copy(PT_PREFIX.with_name("bert_model.ckpt.index"), tmp_path / "ckpt.index")
    data = PT_PREFIX.with_name("bert_model.ckpt.data-00000-of-00001").read_bytes()
    (tmp_path / "ckpt.data-00000-of-00001").write_bytes(data[:100_000])
    with pytest.raises(CheckpointFormatError, match=r"ckpt\.data-00000-of-00001: data file is truncated"):
        convert_tf_checkpoint(ckpt, CONFIG, tmp_path / "out")
    assert _leftovers(tmp_path / "out") == []


def test_failure_while_saving_removes_the_temporary_folder(tmp_path, monkeypatch):
    from bert_lrp.models.bert import BertPreTrainedModel

    def broken_save(self, directory, dtype=None):
        (Path(directory) / "partial.bin").write_bytes(b"x")
        raise OSError("disk full")

    monkeypatch.setattr(BertPreTrainedModel, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert_tf_checkpoint(PT_PREFIX, CONFIG, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_non_empty_output_folder_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="not empty"):
        convert_tf_checkpoint(PT_PREFIX, CONFIG, out)
    assert (out / "keep.txt").read_text() == "mine"
    convert_tf_checkpoint(PT_PREFIX, CONFIG, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


# ---------------------------------------------------------------------------------------------
# Command line and script
# ---------------------------------------------------------------------------------------------


def test_convert_cli_infers_classifier_head(tmp_path):
    out = tmp_path / "out"
    code = convert_main(["--tf-checkpoint", str(CLS_PREFIX), "--config", str(CLASSIFIER / "bert_config.json"),
                         "--vocab", str(CLASSIFIER / "vocab.txt"), "--out", str(out)])
    config = json.loads((out / "config.json").read_text())
    assert code == 0 and config["num_labels"] == 3
    assert config["architectures"] == ["BertForSequenceClassification"]


def test_convert_cli_reports_errors_with_exit_code_1(tmp_path, capsys):
    from bert_lrp.cli import main as cli_main

    out = tmp_path / "out"
    args = ["--tf-checkpoint", str(CORRUPTED / "bitflip_data"), "--config", str(CONFIG), "--out", str(out)]
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        convert_main(args)  # the command raises; the CLI boundary reports it as one line
    code = cli_main(["convert", *args])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("bert-lrp convert: error: ") and "checksum mismatch" in err
    assert _leftovers(out) == []


def test_inspect_lists_every_tensor_with_dtype_shape_and_size(capsys):
    assert inspect_main([str(PT_PREFIX)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 140  # 139 tensors + summary
    query = next(line for line in lines if line.startswith("bert/encoder/layer_0/attention/self/query/kernel "))
    assert query.split()[1:] == ["float32", "[32,", "32]", "4.0", "KiB"]
    assert lines[-1].startswith("139 tensors")


def test_inspect_verify_flags_the_corrupted_tensor(capsys):
    assert inspect_main([str(CORRUPTED / "bitflip_data"), "--verify"]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("bert/encoder/layer_0/attention/self/query/kernel")


def _load_script():
    path = REPO / "scripts" / "convert_tf_checkpoint_to_pytorch.py"
    spec = importlib.util.spec_from_file_location("convert_tf_checkpoint_to_pytorch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("filename", ["pytorch_model.safetensors", "pytorch_model.bin"])
def test_script_writes_only_a_weights_file(tmp_path, filename, pretraining_model):
    dump = tmp_path / filename
    code = _load_script().main(["--tf_checkpoint_path", str(PT_PREFIX), "--bert_config_file", str(CONFIG),
                                "--pytorch_dump_path", str(dump)])
    assert code == 0 and [p.name for p in tmp_path.iterdir()] == [filename]
    if filename.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(dump)
    else:
        state = torch.load(dump, weights_only=True)
    expected = pretraining_model[0].state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_script_treats_other_dump_paths_as_folders(tmp_path):
    code = _load_script().main(["--tf_checkpoint_path", str(PT_PREFIX), "--bert_config_file", str(CONFIG),
                                "--pytorch_dump_path", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "out" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# Round trip through transformers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix, config, hf_class, output", [
    (PT_PREFIX, CONFIG, "BertForPreTraining", "prediction_logits"),
    (CLS_PREFIX, CLASSIFIER / "bert_config.json", "BertForSequenceClassification", "logits"),
], ids=["pretraining", "classifier"])
def test_transformers_loads_the_converted_folder_with_identical_logits(tmp_path, prefix, config, hf_class, output):
    transformers = pytest.importorskip("transformers")
    out = convert_tf_checkpoint(prefix, config, tmp_path / "out")
    ours, _ = convert_tf_to_model(prefix, config)
    theirs = getattr(transformers, hf_class).from_pretrained(out).eval()
    inputs, _ = next(_batches(prefix.parent))
    with torch.no_grad():
        diff = (getattr(ours(**inputs), output) - getattr(theirs(**inputs), output)).abs().max()
    assert float(diff) <= 1e-6
