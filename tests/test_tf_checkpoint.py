"""Tests of the pure-numpy TF tensor-bundle reader against checkpoints written by TensorFlow."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # the fuzz tests need hypothesis; everything else runs without it
    settings = None

from bert_lrp.tf.bundle import (
    CheckpointFormatError,
    ChecksumError,
    TFCheckpointError,
    TFCheckpointReader,
    UnsupportedCheckpointError,
    crc32c,
    mask_crc,
    unmask_crc,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tf_bert"
PRETRAINING = FIXTURES / "tiny_pretraining" / "bert_model.ckpt"
CLASSIFIER = FIXTURES / "tiny_classifier" / "model.ckpt-678"
CORRUPTED = FIXTURES / "corrupted"



# ---------------------------------------------------------------------------------------------
# A minimal tensor-bundle writer, used to build checkpoints with features the fixtures lack
# ---------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: object, wire: int = 0) -> bytes:
    tag = _varint(number << 3 | wire)
    if wire == 0:
        return tag + _varint(int(value))
    if wire == 2:
        return tag + _varint(len(value)) + bytes(value)
    if wire == 5:
        return tag + int(value).to_bytes(4, "little")
    if wire == 1:
        return tag + int(value).to_bytes(8, "little")
    raise ValueError(wire)


def _block(entries: Sequence[Tuple[bytes, bytes]]) -> bytes:
    """Block contents without prefix compression (every entry is a restart point)."""
    body, restarts = bytearray(), []
    for key, value in entries:
        restarts.append(len(body))
        body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    restarts = restarts or [0]
    for r in restarts:
        body += r.to_bytes(4, "little")
    return bytes(body + len(restarts).to_bytes(4, "little"))


def _with_trailer(contents: bytes) -> bytes:
    return contents + b"\x00" + mask_crc(crc32c(contents + b"\x00")).to_bytes(4, "little")


def sstable(data_block: bytes, handle_copies: int = 1) -> bytes:
    """Wrap raw data-block contents into a complete SSTable (metaindex, index, footer)."""
    out = _with_trailer(data_block)
    meta_handle = _varint(len(out)) + _varint(len(_block([])))
    out += _with_trailer(_block([]))
    data_handle = _varint(0) + _varint(len(data_block))
    index = _block([(b"\xff" * 8 + bytes([i]), data_handle) for i in range(handle_copies)])
    index_handle = _varint(len(out)) + _varint(len(index))
    out += _with_trailer(index)
    footer = (meta_handle + index_handle).ljust(40, b"\x00")
    return out + footer + (0xDB4775248B80FB57).to_bytes(8, "little")


def entry_proto(dtype: int, shape: Sequence[int], shard: int, offset: int, size: int,
                crc: Optional[int], extra: bytes = b"") -> bytes:
    dims = b"".join(_field(2, _field(1, d), 2) for d in shape)
    proto = _field(1, dtype) + _field(2, dims, 2) + _field(3, shard) + _field(4, offset) + _field(5, size)
    if crc is not None:
        proto += _field(6, mask_crc(crc), 5)
    return proto + extra


def write_bundle(prefix: Path, tensors: Dict[str, Tuple[int, Sequence[int], bytes, int]],
                 num_shards: int = 1, endianness: int = 0, extra: bytes = b"") -> None:
    """Write ``name -> (dtype_enum, shape, raw bytes, shard[, crc32c])`` as a tensor bundle; the
    checksum is the CRC32C of the bytes unless given (a string tensor's is not: give the one
    TensorFlow stored, e.g. read from a fixture TensorFlow wrote)."""
    shards: List[bytearray] = [bytearray() for _ in range(num_shards)]
    entries = []
    for name in sorted(tensors):
        dtype, shape, raw, shard, *given = tensors[name]
        crc = given[0] if given else crc32c(raw)
        entries.append((name.encode(), entry_proto(dtype, shape, shard, len(shards[shard]), len(raw),
                                                   crc, extra)))
        shards[shard] += raw
    header = _field(1, num_shards) + _field(2, endianness) + _field(3, _field(1, 1), 2)
    prefix.with_name(prefix.name + ".index").write_bytes(sstable(_block([(b"", header)] + entries)))
    for i, data in enumerate(shards):
        prefix.with_name(f"{prefix.name}.data-{i:05d}-of-{num_shards:05d}").write_bytes(bytes(data))


def _bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# CRC32C
# ---------------------------------------------------------------------------------------------


def test_crc32c_matches_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 31, 64, 65, 1001])
def test_crc32c_matches_bitwise_definition(length):
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    assert crc32c(data) == _bitwise_crc32c(data)


def test_crc32c_can_be_continued_across_calls():
    data = bytes(range(256)) * 7
    assert crc32c(data[300:], crc32c(data[:300])) == crc32c(data)


def test_crc_mask_is_inverted_by_unmask():
    for crc in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask_crc(mask_crc(crc)) == crc


# ---------------------------------------------------------------------------------------------
# Real TensorFlow fixtures
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [PRETRAINING, CLASSIFIER], ids=["pretraining", "classifier"])
def test_variables_list_names_dtypes_and_shapes_as_tf(prefix):
    info = json.loads((prefix.parent / "fixture_info.json").read_text())["variables"]
    expected = {name: (dtype, tuple(shape)) for name, (shape, dtype) in info.items()}
    assert TFCheckpointReader(prefix).variables() == expected


@pytest.mark.parametrize("prefix", [PRETRAINING, CLASSIFIER], ids=["pretraining", "classifier"])
def test_every_tensor_is_bit_identical_to_tensorflow(prefix):
    expected = np.load(prefix.parent / "tf_variables.npz")
    seen = set()
    for name, array in TFCheckpointReader(prefix).iter_tensors():
        ref = expected[name]
        assert (array.dtype, array.shape) == (ref.dtype, ref.shape), name
        assert array.tobytes() == ref.tobytes(), name
        seen.add(name)
    assert seen == set(expected.files)


def test_global_step_is_an_int64_scalar():
    step = TFCheckpointReader(CLASSIFIER).get_tensor("global_step")
    assert step.dtype == np.int64 and step.shape == () and int(step) == 678


@pytest.mark.parametrize("form", ["folder", "index_file", "data_file"])
def test_prefix_can_be_given_as_folder_or_file(form):
    path = {
        "folder": PRETRAINING.parent,
        "index_file": PRETRAINING.with_name(PRETRAINING.name + ".index"),
        "data_file": PRETRAINING.with_name(PRETRAINING.name + ".data-00000-of-00001"),
    }[form]
    assert TFCheckpointReader(path).prefix == str(PRETRAINING)


def test_unknown_tensor_name_raises_key_error():
    with pytest.raises(KeyError, match="no_such_tensor"):
        TFCheckpointReader(PRETRAINING).get_tensor("no_such_tensor")


# ---------------------------------------------------------------------------------------------
# Corrupted fixtures
# ---------------------------------------------------------------------------------------------


def test_flipped_data_byte_raises_checksum_error_naming_tensor_and_crcs():
    reader = TFCheckpointReader(CORRUPTED / "bitflip_data" / "bert_model.ckpt")
    with pytest.raises(ChecksumError) as err:
        reader.get_tensor("bert/encoder/layer_0/attention/self/query/kernel")
    message = str(err.value)
    assert "bert/encoder/layer_0/attention/self/query/kernel" in message
    assert "2969990680" in message and "1399297820" in message  # TF's stored vs calculated
    assert "bert_model.ckpt.data-00000-of-00001" in message


def test_flipped_data_byte_leaves_other_tensors_readable():
    reader = TFCheckpointReader(CORRUPTED / "bitflip_data" / "bert_model.ckpt")
    expected = np.load(PRETRAINING.parent / "tf_variables.npz")["bert/pooler/dense/kernel"]
    np.testing.assert_array_equal(reader.get_tensor("bert/pooler/dense/kernel"), expected)


def test_truncated_index_raises_format_error_naming_file():
    with pytest.raises(CheckpointFormatError, match=r"bert_model\.ckpt\.index.*bad magic"):
        TFCheckpointReader(CORRUPTED / "truncated_index" / "bert_model.ckpt")


@pytest.mark.parametrize("name", ["cls/seq_relationship/output_weights/adam_v", "global_step"])
def test_truncated_data_raises_format_error_for_lost_tensors(name):
    reader = TFCheckpointReader(CORRUPTED / "truncated_data" / "bert_model.ckpt")
    with pytest.raises(CheckpointFormatError, match=r"data-00000-of-00001: data file is truncated") as err:
        reader.get_tensor(name)
    assert name in str(err.value)


def test_truncated_data_still_reads_earlier_tensors():
    reader = TFCheckpointReader(CORRUPTED / "truncated_data" / "bert_model.ckpt")
    assert reader.get_tensor("bert/pooler/dense/kernel").shape == (32, 32)


def test_iter_tensors_reads_lazily_in_file_order():
    reader = TFCheckpointReader(CORRUPTED / "truncated_data" / "bert_model.ckpt")
    yielded = []
    with pytest.raises(CheckpointFormatError, match="cls/seq_relationship/output_weights/adam_v"):
        for name, _ in reader.iter_tensors():
            yielded.append(name)
    offsets = [reader.info(name).offset for name in yielded]
    assert len(yielded) == 137 and offsets == sorted(offsets)  # all but the two lost tensors


def test_corrupted_index_block_raises_checksum_error(tmp_path):
    index = bytearray(PRETRAINING.with_name("bert_model.ckpt.index").read_bytes())
    index[100] ^= 0x01  # inside the first data block
    (tmp_path / "ckpt.index").write_bytes(bytes(index))
    with pytest.raises(ChecksumError, match=r"ckpt\.index: data block"):
        TFCheckpointReader(tmp_path / "ckpt")


# ---------------------------------------------------------------------------------------------
# Synthetic bundles: dtypes, shards, unsupported features and malicious entries
# ---------------------------------------------------------------------------------------------


def test_all_numeric_dtypes_round_trip_across_three_shards(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "f32": (1, rng.standard_normal((3, 4)).astype("<f4"), 0),
        "f64": (2, rng.standard_normal(5).astype("<f8"), 1),
        "i32": (3, rng.integers(-9, 9, (2, 2)).astype("<i4"), 2),
        "i64": (9, np.array(2**40 + 3, dtype="<i8"), 0),
        "bool": (10, np.array([True, False, True]), 1),
        "f16": (19, rng.standard_normal(6).astype("<f2"), 2),
    }
    tensors = {name: (dt, a.shape, a.tobytes(), shard) for name, (dt, a, shard) in arrays.items()}
    write_bundle(tmp_path / "ckpt", tensors, num_shards=3)
    reader = TFCheckpointReader(tmp_path / "ckpt")
    for name, (_, expected, _) in arrays.items():
        got = reader.get_tensor(name)
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected)


def test_bfloat16_is_returned_as_exact_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()  # exact in bfloat16
    write_bundle(tmp_path / "ckpt", {"b": (14, (4,), raw, 0)})
    reader = TFCheckpointReader(tmp_path / "ckpt")
    assert reader.variables()["b"] == ("bfloat16", (4,))
    got = reader.get_tensor("b")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


def test_string_tensors_are_listed_but_skipped_with_a_warning(tmp_path):
    write_bundle(tmp_path / "ckpt", {"s": (7, (), b"\x02hi", 0), "x": (3, (1,), b"\x01\x00\x00\x00", 0)})
    reader = TFCheckpointReader(tmp_path / "ckpt")
    assert reader.variables()["s"] == ("string", ())
    with pytest.warns(UserWarning, match="string tensor 's'"):
        names = [name for name, _ in reader.iter_tensors()]
    assert names == ["x"]
    with pytest.raises(UnsupportedCheckpointError, match="string"):
        reader.get_tensor("s")


def test_big_endian_bundle_is_refused(tmp_path):
    write_bundle(tmp_path / "ckpt", {"x": (3, (1,), b"\x00\x00\x00\x01", 0)}, endianness=1)
    with pytest.raises(UnsupportedCheckpointError, match=r"ckpt\.index: big-endian"):
        TFCheckpointReader(tmp_path / "ckpt")


def test_unknown_proto_fields_of_every_wire_type_are_skipped(tmp_path):
    extra = _field(99, 7) + _field(100, 1234, 1) + _field(101, b"abc", 2) + _field(102, 5, 5)
    raw = np.arange(3, dtype="<i4").tobytes()
    write_bundle(tmp_path / "ckpt", {"x": (3, (3,), raw, 0)}, extra=extra)
    np.testing.assert_array_equal(TFCheckpointReader(tmp_path / "ckpt").get_tensor("x"), [0, 1, 2])


def _write_single_entry(prefix: Path, entry: bytes, data: bytes = b"") -> None:
    header = _field(1, 1) + _field(3, _field(1, 1), 2)
    prefix.with_name(prefix.name + ".index").write_bytes(sstable(_block([(b"", header), (b"x", entry)])))
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(data)


def test_shape_inconsistent_with_size_is_rejected(tmp_path):
    _write_single_entry(tmp_path / "ckpt", entry_proto(1, (2**20, 2**20), 0, 0, 16, 0), b"\x00" * 16)
    with pytest.raises(CheckpointFormatError, match="needs .* bytes but the entry says 16"):
        TFCheckpointReader(tmp_path / "ckpt")


def test_huge_consistent_entry_fails_without_allocating(tmp_path):
    size = 2**62
    _write_single_entry(tmp_path / "ckpt", entry_proto(1, (2**60,), 0, 0, size, 0), b"\x00" * 16)
    reader = TFCheckpointReader(tmp_path / "ckpt")
    with pytest.raises(CheckpointFormatError, match="data file is truncated"):
        reader.get_tensor("x")


def test_rank_beyond_numpy_limit_is_refused(tmp_path):
    _write_single_entry(tmp_path / "ckpt", entry_proto(1, (1,) * 65, 0, 0, 4, 0), b"\x00" * 4)
    with pytest.raises(UnsupportedCheckpointError, match="rank 65"):
        TFCheckpointReader(tmp_path / "ckpt")


def test_empty_tensor_with_absurd_dimension_is_rejected(tmp_path):
    _write_single_entry(tmp_path / "ckpt", entry_proto(1, (0, 2**40, 2**40), 0, 0, 0, 0))
    with pytest.raises(CheckpointFormatError, match="impossibly large"):
        TFCheckpointReader(tmp_path / "ckpt")


def test_missing_shard_file_is_a_format_error_naming_it(tmp_path):
    write_bundle(tmp_path / "ckpt", {"x": (3, (1,), b"\x01\x00\x00\x00", 1)}, num_shards=2)
    (tmp_path / "ckpt.data-00001-of-00002").unlink()
    with pytest.raises(CheckpointFormatError, match=r"ckpt\.data-00001-of-00002"):
        TFCheckpointReader(tmp_path / "ckpt").get_tensor("x")


def test_overlong_varint_is_a_format_error(tmp_path):
    entry = _varint(1 << 3) + b"\xff" * 11 + b"\x01"
    _write_single_entry(tmp_path / "ckpt", entry)
    with pytest.raises(CheckpointFormatError, match="varint longer"):
        TFCheckpointReader(tmp_path / "ckpt")


def test_length_beyond_remaining_bytes_is_a_format_error(tmp_path):
    _write_single_entry(tmp_path / "ckpt", _varint(2 << 3 | 2) + _varint(10**12))
    with pytest.raises(CheckpointFormatError, match="exceeds the 0 remaining bytes"):
        TFCheckpointReader(tmp_path / "ckpt")


def _header_entry() -> bytes:
    header = _field(1, 1) + _field(3, _field(1, 1), 2)
    return _varint(0) + _varint(0) + _varint(len(header)) + header


def test_prefix_compression_bomb_is_rejected_quickly(tmp_path):
    # One 60 kB key, then 60k entries of 5 bytes, each re-sharing almost all of it (increasing keys
    # 0...01 of decreasing length): without a budget the reader would copy ~1.8 GB of keys.
    long_key = b"\x00" * 59_999 + b"\x01"
    body = bytearray(_header_entry() + _varint(0) + _varint(len(long_key)) + _varint(0) + long_key)
    for shared in range(59_998, 0, -1):
        body += _varint(shared) + _varint(1) + _varint(0) + b"\x01"
    block = bytes(body) + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")
    (tmp_path / "ckpt.index").write_bytes(sstable(block))
    with pytest.raises(CheckpointFormatError, match="implausibly many key bytes"):
        TFCheckpointReader(tmp_path / "ckpt")


def test_index_pointing_twice_at_one_data_block_is_rejected(tmp_path):
    block = _block([(b"", _field(1, 1) + _field(3, _field(1, 1), 2))])
    (tmp_path / "ckpt.index").write_bytes(sstable(block, handle_copies=2))
    with pytest.raises(CheckpointFormatError, match="overlaps the previous one"):
        TFCheckpointReader(tmp_path / "ckpt")


def test_overlong_key_is_rejected(tmp_path):
    key = b"k" * 70_000
    block = _block([(b"", _field(1, 1) + _field(3, _field(1, 1), 2)), (key, b"")])
    (tmp_path / "ckpt.index").write_bytes(sstable(block))
    with pytest.raises(CheckpointFormatError, match="key of 70000 bytes exceeds"):
        TFCheckpointReader(tmp_path / "ckpt")


# ---------------------------------------------------------------------------------------------
# Fuzzing: arbitrary bytes only ever raise TFCheckpointError subclasses
# ---------------------------------------------------------------------------------------------

def _read_everything(index: bytes, data: bytes = b"") -> None:
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(folder) / "ckpt"
        prefix.with_name("ckpt.index").write_bytes(index)
        prefix.with_name("ckpt.data-00000-of-00001").write_bytes(data)
        try:
            reader = TFCheckpointReader(prefix)
            for name in reader.variables():
                try:
                    reader.get_tensor(name)
                except TFCheckpointError:
                    pass
        except TFCheckpointError:
            pass


def _fixture_data_block() -> Tuple[bytes, bytes]:
    """The real index's (single) data block contents, and the real data file."""
    index = PRETRAINING.with_name("bert_model.ckpt.index").read_bytes()
    pos, meta_offset = 0, 0
    footer = index[-48:]
    for shift in range(0, 70, 7):  # first varint of the footer: metaindex offset
        meta_offset |= (footer[pos] & 0x7F) << shift
        pos += 1
        if not footer[pos - 1] & 0x80:
            break
    data = PRETRAINING.with_name("bert_model.ckpt.data-00000-of-00001").read_bytes()
    return index[: meta_offset - 5], data


if settings is None:

    def test_fuzz_needs_hypothesis():
        pytest.skip("hypothesis is not installed")

else:
    FUZZ = settings(max_examples=150, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])

    @FUZZ
    @given(st.binary(max_size=600))
    def test_fuzz_random_index_bytes(blob):
        _read_everything(blob)
        _read_everything(blob + (0xDB4775248B80FB57).to_bytes(8, "little"))

    @FUZZ
    @given(st.data())
    def test_fuzz_mutated_real_index(data):
        index = bytearray(PRETRAINING.with_name("bert_model.ckpt.index").read_bytes())
        for _ in range(data.draw(st.integers(1, 4))):
            index[data.draw(st.integers(0, len(index) - 1))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(index)))
        _read_everything(bytes(index[:cut]) if data.draw(st.booleans()) else bytes(index))

    @FUZZ
    @given(st.data())
    def test_fuzz_mutated_block_contents_with_valid_checksums(data):
        block, shard = _fixture_data_block()
        block = bytearray(block)
        for _ in range(data.draw(st.integers(1, 6))):
            block[data.draw(st.integers(0, len(block) - 1))] = data.draw(st.integers(0, 255))
        start = data.draw(st.integers(0, len(block)))
        end = data.draw(st.integers(start, len(block)))
        if data.draw(st.booleans()):
            del block[start:end]  # drop a span: misaligns entries and restarts
        _read_everything(sstable(bytes(block)), shard)


def test_fuzz_helper_rebuilds_a_readable_index():
    block, shard = _fixture_data_block()
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(folder) / "ckpt"
        prefix.with_name("ckpt.index").write_bytes(sstable(block))
        shutil.copy(PRETRAINING.with_name("bert_model.ckpt.data-00000-of-00001"),
                    prefix.with_name("ckpt.data-00000-of-00001"))
        assert len(TFCheckpointReader(prefix)) == 139
