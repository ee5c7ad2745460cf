"""TF2 object-based checkpoints (``tf.train.Checkpoint``) convert, checked against files and outputs
written by real TensorFlow 2.21 (``tests/fixtures/tf2_object``, made by ``scripts/make_tf2_fixture.py``).

* The checksum TensorFlow stores for a DT_STRING tensor covers each element's length as a
  fixed-width little-endian integer, then the masked checksum of the lengths as written, then the
  bytes; ours equals TensorFlow's for the object graph and for a four-element string variable.
* The converted model equals TensorFlow's outputs (float32: <= 1e-5).
* Optimizer slots, the optimizer's own variables, ``save_counter`` and the object graph are
  skipped, never converted; damage inside the object graph is refused (or, since convert skips
  it, accepted with ``--accept-damaged-skipped``, with a warning).
* A config with fewer layers than the checkpoint is refused, naming the config and a weight.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bert_lrp import cli
from bert_lrp.models.auto import AutoModel
from bert_lrp.tf.bundle import ChecksumError, TFCheckpointReader, crc32c, mask_crc, string_tensor_crc
from bert_lrp.tf.convert import convert_tf_to_model

FIXTURE = Path(__file__).parent / "fixtures" / "tf2_object"
PREFIX = FIXTURE / "ckpt-1"
GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


def test_our_string_checksum_equals_what_tensorflow_stored():
    for prefix in (PREFIX, FIXTURE / "strings"):
        reader = TFCheckpointReader(str(prefix))
        strings = [name for name in reader.variables() if reader.info(name).dtype_enum == 7]
        assert strings  # the object graph, and the four-element variable in strings
        for name in strings:
            reader.verify_tensor(name)  # raises on a mismatch
    assert TFCheckpointReader(str(FIXTURE / "strings")).info("texts/.ATTRIBUTES/VARIABLE_VALUE").shape == (4,)


def test_string_checksum_by_hand():
    """Two elements b"ab" and b"" laid out as TensorFlow writes them; the expected checksum is
    built from the format's description, step by step, not by our function."""
    lengths_crc = crc32c((2).to_bytes(4, "little") + (0).to_bytes(4, "little"))
    masked = mask_crc(lengths_crc).to_bytes(4, "little")
    data = bytes([2, 0]) + masked + b"ab"  # varint lengths, masked length checksum, the bytes
    expected = crc32c(b"ab", crc32c(masked, lengths_crc))
    assert string_tensor_crc(data, 2) == expected
    assert string_tensor_crc(data, 2) != crc32c(data)  # not the checksum of the raw bytes
    long_length = bytes([0x80, 0x02])  # varint 256: still a 4-byte length in the checksum
    lengths_crc = crc32c((256).to_bytes(4, "little"))
    masked = mask_crc(lengths_crc).to_bytes(4, "little")
    assert string_tensor_crc(long_length + masked + b"x" * 256, 1) == crc32c(b"x" * 256, crc32c(masked, lengths_crc))
    with pytest.raises(ChecksumError, match="lengths of the string tensor"):
        string_tensor_crc(bytes([3, 0]) + mask_crc(crc32c((2).to_bytes(4, "little") * 2)).to_bytes(4, "little")
                          + b"ab", 2, "here")


def test_the_converted_model_equals_tensorflows_outputs(tmp_path):
    out = tmp_path / "model"
    assert cli.main(["convert", "--tf-checkpoint", str(PREFIX), "--config", str(FIXTURE / "bert_config.json"),
                     "--vocab", str(FIXTURE / "vocab.txt"), "--out", str(out)]) == 0
    model = AutoModel.from_pretrained(out).eval()
    references = np.load(FIXTURE / "reference_outputs.npz")
    for b in range(2):
        inputs = {key: torch.from_numpy(references[f"batch{b}_{key}"])
                  for key in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.no_grad():
            output = model(**inputs)
        real = references[f"batch{b}_attention_mask"].astype(bool)  # padded rows: no meaning
        # float32 on both sides, different kernels and summation orders: 1e-5 absolute on values of order 1
        sequence = output.last_hidden_state.numpy()[real]
        np.testing.assert_allclose(sequence, references[f"batch{b}_last_hidden_state"][real], atol=1e-5, rtol=0)
        np.testing.assert_allclose(output.pooler_output.numpy(), references[f"batch{b}_pooler_output"],
                                   atol=1e-5, rtol=0)


def test_training_state_and_the_object_graph_are_skipped_not_converted():
    model, report = convert_tf_to_model(str(PREFIX), FIXTURE / "bert_config.json")
    names = set(json.loads((FIXTURE / "fixture_info.json").read_text())["variables"])
    weights = {n for n in names if n.startswith("bert/") and ".OPTIMIZER_SLOT" not in n}
    assert set(report.loaded) == weights and len(weights) == 39
    assert set(report.skipped) == names - weights
    assert {GRAPH, "save_counter/.ATTRIBUTES/VARIABLE_VALUE", "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"} <= \
        set(report.skipped)
    assert not report.unmapped


def _damaged_copy(tmp_path: Path) -> Path:
    """The fixture with one bit flipped inside the object graph's string bytes."""
    folder = tmp_path / "damaged"
    shutil.copytree(FIXTURE, folder)
    info = TFCheckpointReader(str(folder / "ckpt-1")).info(GRAPH)
    data = folder / "ckpt-1.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[info.offset + info.size - 10] ^= 0x04  # in the graph's text, past its lengths
    data.write_bytes(bytes(raw))
    return folder


def test_a_bit_flip_in_the_object_graph_is_refused_or_accepted_on_request(tmp_path, capsys):
    folder = _damaged_copy(tmp_path)
    out = tmp_path / "out"
    command = ["convert", "--tf-checkpoint", str(folder / "ckpt-1"), "--config", str(folder / "bert_config.json"),
               "--out", str(out)]
    assert cli.main(command) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and GRAPH in err and "ckpt-1.data-00000-of-00001" in err
    assert not out.exists()
    assert cli.main([*command, "--accept-damaged-skipped"]) == 0
    assert GRAPH in capsys.readouterr().err  # named in the warning
    assert (out / "model.safetensors").is_file()


def test_a_config_with_fewer_layers_than_the_checkpoint_is_refused(tmp_path, capsys):
    config = json.loads((FIXTURE / "bert_config.json").read_text())
    config["num_hidden_layers"] = 1
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "out"
    assert cli.main(["convert", "--tf-checkpoint", str(PREFIX), "--config", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "bert/encoder/layer_1/" in err and "num_hidden_layers is 1" in err
    assert not out.exists()
    config["num_hidden_layers"] = 3  # more layers than the checkpoint: a parameter without a value
    path.write_text(json.dumps(config))
    assert cli.main(["convert", "--tf-checkpoint", str(PREFIX), "--config", str(path), "--out", str(out)]) == 1
    assert "encoder.layer.2" in capsys.readouterr().err and not out.exists()
