"""Read TensorFlow tensor-bundle checkpoints (``<prefix>.index`` + ``<prefix>.data-*``) without TensorFlow.

The ``.index`` file is a LevelDB-style SSTable whose first key ``""`` holds a ``BundleHeaderProto``
and whose other keys are tensor names mapped to ``BundleEntryProto`` messages. Each entry points
at ``[offset, offset + size)`` in one data shard ``<prefix>.data-%05d-of-%05d``. Every SSTable
block and every tensor carries a masked CRC32C, and both are verified here.

Only numpy and the standard library are used. Tensors are read one at a time with ``seek`` +
``readinto``, so reading a tensor never loads a whole data file.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BertLrpError

__all__ = [
    "TFCheckpointError",
    "CheckpointFormatError",
    "UnsupportedCheckpointError",
    "ChecksumError",
    "TensorInfo",
    "ShardShortfall",
    "TFCheckpointReader",
    "crc32c",
    "mask_crc",
    "unmask_crc",
    "resolve_prefix",
]

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class TFCheckpointError(BertLrpError, Exception):
    """Base class of every error raised while reading a TF checkpoint."""


class CheckpointFormatError(TFCheckpointError):
    """The files are not a valid tensor bundle (bad magic, truncation, bad varint/proto, missing shard)."""


class UnsupportedCheckpointError(CheckpointFormatError):
    """A valid bundle using a feature this reader does not implement (big-endian, strings, slices...)."""


class ChecksumError(TFCheckpointError):
    """A stored CRC32C does not match the bytes read."""


# --------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), vectorised with numpy
# --------------------------------------------------------------------------------------------
#
# The CRC register update is linear over GF(2). With a zero initial register ("raw" CRC),
# raw(A + B) = shift_{len(B)}(raw(A)) ^ raw(B), where shift_n is the linear map "feed n zero
# bytes". We therefore (1) compute the raw CRC of every 64-byte block at once, as the XOR of 64
# byte-table lookups (one table per byte position), then (2) fold neighbouring pairs level by
# level (a tree of depth log2(n/64)), each level applying shift_{64 * 2**k} through four
# 256-entry tables. Everything runs on whole numpy arrays; only the last < 64 bytes are looped.

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_BLOCK = 64  # bytes per leaf of the reduction tree
_CRC_CHUNK = 1 << 20  # bytes hashed per vectorised pass (multiple of _BLOCK; bounds temporaries)
_MAX_LEVELS = 40


def _byte_table() -> np.ndarray:
    """Table of the register after feeding one byte ``b`` into a register holding zero."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


def _leaf_tables(t0: np.ndarray) -> np.ndarray:
    """``tables[k][b]``: raw CRC of byte ``b`` followed by ``k`` zero bytes, k < _BLOCK."""
    tables = [t0]
    for _ in range(_BLOCK - 1):
        prev = tables[-1]
        tables.append((prev >> 8) ^ t0[prev & 0xFF])
    return np.stack(tables).astype(np.uint32)


def _apply_op(op: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply a linear map on 32-bit registers, stored as 4 byte tables, to an array of registers."""
    return (
        op[0][x & 0xFF]
        ^ op[1][(x >> 8) & 0xFF]
        ^ op[2][(x >> 16) & 0xFF]
        ^ op[3][(x >> 24) & 0xFF]
    )


def _zero_shift_ops(t0: np.ndarray) -> np.ndarray:
    """``ops[k]``: tables of the map "feed _BLOCK * 2**k zero bytes" for k < _MAX_LEVELS."""
    basis = np.arange(256, dtype=np.uint32)
    op = np.stack([basis << np.uint32(8 * i) for i in range(4)]).astype(np.uint32)  # identity
    for _ in range(_BLOCK):
        op = (op >> 8) ^ t0[op & 0xFF]  # feed one zero byte
    ops = [op]
    for _ in range(_MAX_LEVELS - 1):
        op = _apply_op(op, op)  # composing a shift with itself doubles its length
        ops.append(op)
    return np.stack(ops).astype(np.uint32)


_T0 = _byte_table()
_LEAF = _leaf_tables(_T0)
_SHIFT_OPS = _zero_shift_ops(_T0)
for _table in (_T0, _LEAF, _SHIFT_OPS):
    _table.setflags(write=False)
del _table


def _raw_update_bytes(reg: int, data: bytes) -> int:
    """Byte-at-a-time register update (used for at most _BLOCK - 1 trailing bytes)."""
    for byte in data:
        reg = int(_T0[(reg ^ byte) & 0xFF]) ^ (reg >> 8)
    return reg


def _raw_update_blocks(reg: int, blocks: np.ndarray) -> int:
    """Register update over a non-empty ``(n, _BLOCK)`` uint8 array of consecutive blocks."""
    crcs = _LEAF[_BLOCK - 1][blocks[:, 0]]
    for k in range(1, _BLOCK):
        crcs ^= _LEAF[_BLOCK - 1 - k][blocks[:, k]]
    # Feeding `reg` then block 0 equals shift_BLOCK(reg) ^ raw(block 0).
    crcs[0] ^= _apply_op(_SHIFT_OPS[0], np.array([reg], dtype=np.uint32))[0]
    level = 0
    while crcs.shape[0] > 1:
        if crcs.shape[0] % 2:
            # A leading zero register is neutral: it stands for zero bytes fed into a zero register.
            crcs = np.concatenate([np.zeros(1, dtype=np.uint32), crcs])
        crcs = _apply_op(_SHIFT_OPS[level], crcs[0::2]) ^ crcs[1::2]
        level += 1
    return int(crcs[0])


def crc32c(data: Union[bytes, bytearray, memoryview, np.ndarray], crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``; pass a previous result as ``crc`` to continue it."""
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    reg = (crc ^ _U32) & _U32
    for start in range(0, buf.shape[0], _CRC_CHUNK):
        chunk = buf[start : start + _CRC_CHUNK]
        n_blocks = chunk.shape[0] // _BLOCK
        if n_blocks:
            reg = _raw_update_blocks(reg, chunk[: n_blocks * _BLOCK].reshape(n_blocks, _BLOCK))
        reg = _raw_update_bytes(reg, chunk[n_blocks * _BLOCK :].tobytes())
    return reg ^ _U32


def _varint(data: bytes, position: int, where: str) -> Tuple[int, int]:
    """``(value, next position)`` of the little-endian base-128 varint at ``position``."""
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise CheckpointFormatError(f"{where}: string tensor lengths are cut or malformed")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7


def string_tensor_crc(data: Union[bytes, bytearray, memoryview, np.ndarray], elements: int, where: str = "") -> int:
    """The CRC32C TensorFlow stores for a DT_STRING tensor written as ``data``.

    On disk such a tensor is: one varint64 length per element, then the masked CRC32C of the
    lengths (4 bytes, little-endian), then the elements' bytes. The stored checksum is not the
    CRC32C of those bytes: it extends over each length as a fixed-width little-endian integer
    (4 bytes, or 8 for an element longer than 2**32 - 1 bytes), then the 4 bytes of the masked
    length checksum as written, then the elements' bytes. The length checksum on disk is checked
    too (:class:`ChecksumError` naming ``where`` when it does not match the lengths)."""
    data = bytes(data)
    crc, position, lengths = 0, 0, []
    for _ in range(elements):
        length, position = _varint(data, position, where)
        lengths.append(length)
        width = 4 if length <= _U32 else 8
        crc = crc32c(length.to_bytes(width, "little"), crc)
    if position + 4 > len(data):
        raise CheckpointFormatError(f"{where}: string tensor is cut before its length checksum")
    stored = int.from_bytes(data[position:position + 4], "little")
    if unmask_crc(stored) != crc:
        raise ChecksumError(f"{where}: the lengths of the string tensor do not match their checksum "
                            f"(stored crc32c {unmask_crc(stored)}, computed {crc})")
    crc = crc32c(data[position:position + 4], crc)
    position += 4
    if position + sum(lengths) != len(data):
        raise CheckpointFormatError(f"{where}: string tensor holds {len(data) - position} bytes of text, its lengths "
                                    f"say {sum(lengths)}")
    return crc32c(data[position:], crc)


def mask_crc(crc: int) -> int:
    """LevelDB/TF CRC masking: rotate right by 15 bits and add a constant."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask_crc(masked: int) -> int:
    """Inverse of :func:`mask_crc`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


# --------------------------------------------------------------------------------------------
# Varints and protobuf wire format
# --------------------------------------------------------------------------------------------


class _Buffer:
    """A read cursor over bytes; every read is bounds-checked and reports ``source`` on error."""

    def __init__(self, data: Union[bytes, memoryview], source: str, what: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.source = source
        self.what = what

    def error(self, message: str) -> CheckpointFormatError:
        return CheckpointFormatError(f"{self.source}: {self.what}: {message} (at byte {self.pos})")

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def varint(self, max_bytes: int = 10) -> int:
        """Unsigned LEB128 varint of at most ``max_bytes`` bytes, truncated to 64 bits."""
        value = 0
        for i in range(max_bytes):
            if self.pos >= len(self.data):
                raise self.error("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value & 0xFFFFFFFFFFFFFFFF
        raise self.error(f"varint longer than {max_bytes} bytes")

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise self.error(f"length {n} exceeds the {self.remaining} remaining bytes")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def fixed32(self) -> int:
        return int.from_bytes(self.take(4), "little")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_WIRE_VARINT, _WIRE_FIXED64, _WIRE_BYTES, _WIRE_FIXED32 = 0, 1, 2, 5


def _proto_fields(data: memoryview, source: str, what: str) -> Iterator[Tuple[int, int, object]]:
    """Yield ``(field_number, wire_type, value)``; value is an int or a memoryview for bytes."""
    buf = _Buffer(data, source, what)
    while buf.remaining:
        tag = buf.varint()
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise buf.error("field number 0")
        if wire == _WIRE_VARINT:
            yield field, wire, buf.varint()
        elif wire == _WIRE_FIXED64:
            yield field, wire, int.from_bytes(buf.take(8), "little")
        elif wire == _WIRE_BYTES:
            yield field, wire, buf.take(buf.varint())
        elif wire == _WIRE_FIXED32:
            yield field, wire, buf.fixed32()
        else:  # 3/4 are deprecated groups, 6/7 do not exist
            raise buf.error(f"unsupported wire type {wire} for field {field}")


def _expect(wire: int, expected: int, field: int, source: str, what: str) -> None:
    if wire != expected:
        raise CheckpointFormatError(
            f"{source}: {what}: field {field} has wire type {wire}, expected {expected}"
        )


# --------------------------------------------------------------------------------------------
# Bundle protos
# --------------------------------------------------------------------------------------------

# DataType enum value -> (name, little-endian numpy dtype or None for strings)
_DTYPES: Dict[int, Tuple[str, Optional[str]]] = {
    1: ("float32", "<f4"),
    2: ("float64", "<f8"),
    3: ("int32", "<i4"),
    4: ("uint8", "<u1"),
    5: ("int16", "<i2"),
    6: ("int8", "<i1"),
    7: ("string", None),
    8: ("complex64", "<c8"),
    9: ("int64", "<i8"),
    10: ("bool", "<u1"),
    14: ("bfloat16", "<u2"),
    17: ("uint16", "<u2"),
    18: ("complex128", "<c16"),
    19: ("float16", "<f2"),
    22: ("uint32", "<u4"),
    23: ("uint64", "<u8"),
}
_DT_STRING = 7
_BUNDLE_VERSION = 1  # kTensorBundleVersion
_MAX_RANK = 64  # numpy's maximum number of dimensions


@dataclass(frozen=True)
class TensorInfo:
    """One ``BundleEntryProto``: where a tensor lives and how to decode it."""

    name: str
    dtype_enum: int
    shape: Tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc: Optional[int]
    sliced: bool

    @property
    def dtype(self) -> str:
        known = _DTYPES.get(self.dtype_enum)
        return known[0] if known else f"DT_{self.dtype_enum}"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ShardShortfall:
    """A data shard shorter than its index entries require (or missing: ``actual`` is ``None``)."""

    path: str
    expected: int  # bytes the index needs: the largest ``offset + size`` of the shard's tensors
    actual: Optional[int]  # bytes the file has; None if the file is missing or unreadable
    lost: Tuple[str, ...]  # tensors whose bytes reach past the end of the file, in file order
    reason: str = ""  # why the file could not be opened, if it could not

    def describe(self) -> str:
        if self.actual is None:
            return (f"{self.path}: data shard is missing or unreadable ({self.reason}); "
                    f"the index needs {self.expected} bytes from it")
        return (f"{self.path}: data file is truncated: the index needs {self.expected} bytes, the file has "
                f"{self.actual} bytes ({self.expected - self.actual} missing)")


@dataclass(frozen=True)
class _Header:
    num_shards: int
    big_endian: bool
    min_consumer: int
    bad_consumers: Tuple[int, ...]


def _parse_header(value: memoryview, source: str) -> _Header:
    what = "BundleHeaderProto"
    num_shards, endianness, min_consumer, bad = 1, 0, 0, []
    for field, wire, val in _proto_fields(value, source, what):
        if field == 1:
            _expect(wire, _WIRE_VARINT, field, source, what)
            num_shards = _signed64(val)
        elif field == 2:
            _expect(wire, _WIRE_VARINT, field, source, what)
            endianness = val
        elif field == 3:
            _expect(wire, _WIRE_BYTES, field, source, what)
            for vfield, vwire, vval in _proto_fields(val, source, "VersionDef"):
                if vfield == 2 and vwire == _WIRE_VARINT:
                    min_consumer = _signed64(vval)
                elif vfield == 3 and vwire == _WIRE_VARINT:
                    bad.append(_signed64(vval))
    if num_shards < 1:
        raise CheckpointFormatError(f"{source}: {what}: invalid num_shards {num_shards}")
    if endianness not in (0, 1):
        raise CheckpointFormatError(f"{source}: {what}: invalid endianness {endianness}")
    return _Header(num_shards, endianness == 1, min_consumer, tuple(bad))


def _parse_shape(value: memoryview, source: str, what: str) -> Tuple[int, ...]:
    dims: List[int] = []
    for field, wire, val in _proto_fields(value, source, what):
        if field == 2:
            _expect(wire, _WIRE_BYTES, field, source, what)
            size = 0
            for dfield, dwire, dval in _proto_fields(val, source, what + " dim"):
                if dfield == 1:
                    _expect(dwire, _WIRE_VARINT, dfield, source, what + " dim")
                    size = _signed64(dval)
            if size < 0:
                raise CheckpointFormatError(f"{source}: {what}: negative dimension {size}")
            dims.append(size)
        elif field == 3 and wire == _WIRE_VARINT and val:
            raise CheckpointFormatError(f"{source}: {what}: stored tensor has unknown rank")
    return tuple(dims)


def _parse_entry(name: str, value: memoryview, source: str) -> TensorInfo:
    what = f"BundleEntryProto of {name!r}"
    dtype, shape, crc, sliced = 0, (), None, False
    location = {3: 0, 4: 0, 5: 0}  # shard_id, offset, size
    for field, wire, val in _proto_fields(value, source, what):
        if field == 1:
            _expect(wire, _WIRE_VARINT, field, source, what)
            dtype = val
        elif field == 2:
            _expect(wire, _WIRE_BYTES, field, source, what)
            shape = _parse_shape(val, source, what + " shape")
        elif field in location:
            _expect(wire, _WIRE_VARINT, field, source, what)
            location[field] = _signed64(val)
            if location[field] < 0:
                raise CheckpointFormatError(f"{source}: {what}: negative value in field {field}")
        elif field == 6:
            _expect(wire, _WIRE_FIXED32, field, source, what)
            crc = val
        elif field == 7:
            sliced = True
    return TensorInfo(name, dtype, tuple(shape), location[3], location[4], location[5], crc, sliced)


# --------------------------------------------------------------------------------------------
# SSTable
# --------------------------------------------------------------------------------------------

_FOOTER_SIZE = 48
_MAGIC = 0xDB4775248B80FB57
_TRAILER_SIZE = 5
_MAX_KEY_BYTES = 1 << 16  # tensor names are far shorter; bounds work done per (prefix-compressed) key
_KEY_AMPLIFICATION = 64  # decoded key bytes may exceed the index size at most this many times


def _read_block(index: bytes, handle: Tuple[int, int], source: str, what: str) -> memoryview:
    """Return a block's contents after checking its bounds, compression type and CRC."""
    offset, size = handle
    end = offset + size + _TRAILER_SIZE
    if end > len(index) - _FOOTER_SIZE:
        raise CheckpointFormatError(
            f"{source}: {what} at bytes [{offset}, {end}) runs past the table data "
            f"({len(index) - _FOOTER_SIZE} bytes): truncated or corrupt index"
        )
    view = memoryview(index)
    contents, compression = view[offset : offset + size], index[offset + size]
    stored = int.from_bytes(view[offset + size + 1 : end], "little")
    actual = crc32c(view[offset : offset + size + 1])
    if unmask_crc(stored) != actual:
        raise ChecksumError(
            f"{source}: {what} at byte {offset}: block checksum mismatch "
            f"(stored crc32c {unmask_crc(stored)}, computed {actual})"
        )
    if compression != 0:
        raise UnsupportedCheckpointError(
            f"{source}: {what} uses compression type {compression}; tensor bundles are uncompressed"
        )
    return contents


def _block_entries(block: memoryview, source: str, what: str) -> Iterator[Tuple[bytes, memoryview]]:
    """Yield ``(key, value)`` pairs of one block, undoing the prefix compression of keys."""
    if len(block) < 4:
        raise CheckpointFormatError(f"{source}: {what} is {len(block)} bytes, too short for a block")
    num_restarts = int.from_bytes(block[-4:], "little")
    if num_restarts * 4 + 4 > len(block):
        raise CheckpointFormatError(
            f"{source}: {what}: {num_restarts} restart points do not fit in a {len(block)}-byte block"
        )
    buf = _Buffer(block[: len(block) - 4 - 4 * num_restarts], source, what)
    key = b""
    while buf.remaining:
        shared, non_shared, value_len = buf.varint(5), buf.varint(5), buf.varint(5)
        if shared > len(key):
            raise buf.error(f"key shares {shared} bytes with a {len(key)}-byte previous key")
        if shared + non_shared > _MAX_KEY_BYTES:
            raise buf.error(f"key of {shared + non_shared} bytes exceeds {_MAX_KEY_BYTES}")
        key = key[:shared] + bytes(buf.take(non_shared))
        yield key, buf.take(value_len)


def _parse_handle(value: memoryview, source: str, what: str) -> Tuple[int, int]:
    buf = _Buffer(value, source, what)
    return buf.varint(), buf.varint()


def _table_entries(index: bytes, source: str) -> Iterator[Tuple[bytes, memoryview]]:
    """Yield every ``(key, value)`` of the SSTable in key order, checking that keys increase."""
    if len(index) < _FOOTER_SIZE:
        raise CheckpointFormatError(
            f"{source}: file is {len(index)} bytes, shorter than the {_FOOTER_SIZE}-byte SSTable footer"
        )
    footer = memoryview(index)[-_FOOTER_SIZE:]
    if int.from_bytes(footer[40:], "little") != _MAGIC:
        raise CheckpointFormatError(f"{source}: not an sstable (bad magic number); truncated or not an index file")
    handles = _Buffer(footer[:40], source, "footer")
    handles.varint(), handles.varint()  # metaindex handle: unused by tensor bundles
    index_handle = (handles.varint(), handles.varint())
    index_block = _read_block(index, index_handle, source, "index block")
    previous: Optional[bytes] = None
    next_offset, key_budget = 0, _KEY_AMPLIFICATION * len(index)
    for sep, handle_bytes in _block_entries(index_block, source, "index block"):
        handle = _parse_handle(handle_bytes, source, f"block handle for {bytes(sep)!r}")
        if handle[0] < next_offset:
            raise CheckpointFormatError(f"{source}: data block at byte {handle[0]} overlaps the previous one")
        next_offset = handle[0] + handle[1] + _TRAILER_SIZE
        for key, value in _block_entries(_read_block(index, handle, source, "data block"), source, "data block"):
            if previous is not None and key <= previous:
                raise CheckpointFormatError(f"{source}: keys out of order: {key!r} after {previous!r}")
            key_budget -= len(key)
            if key_budget < 0:
                raise CheckpointFormatError(f"{source}: implausibly many key bytes for a {len(index)}-byte index")
            previous = key
            yield key, value


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------

_VERIFY_CHUNK = 8 << 20  # bytes read per step when only checking a tensor's crc32c
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


def resolve_prefix(path: PathLike) -> str:
    """Accept a checkpoint prefix, its ``.index``/``.data-*`` file, or a folder with a ``checkpoint`` file."""
    text = os.fspath(path)
    if os.path.isdir(text):
        state = os.path.join(text, "checkpoint")
        if os.path.isfile(state):
            with open(state, encoding="utf-8", errors="replace") as handle:
                match = re.search(r'^model_checkpoint_path:\s*"(.*)"', handle.read(), re.M)
            if match:
                candidate = match.group(1)
                return candidate if os.path.isabs(candidate) else os.path.join(text, candidate)
        indexes = sorted(p for p in os.listdir(text) if p.endswith(".index"))
        if len(indexes) == 1:
            return os.path.join(text, indexes[0][: -len(".index")])
        raise CheckpointFormatError(
            f"{text}: folder has no 'checkpoint' file and {len(indexes)} .index files; pass the prefix"
        )
    if text.endswith(".index"):
        return text[: -len(".index")]
    return _DATA_SUFFIX.sub("", text)


class TFCheckpointReader:
    """Lazily read tensors from a TF tensor-bundle checkpoint given its prefix.

    Only the ``.index`` file is read on construction; tensors are read on demand, one at a time,
    with their CRC32C verified. ``bfloat16`` tensors are returned as ``float32`` (exact).
    """

    def __init__(self, prefix: PathLike) -> None:
        self.prefix = resolve_prefix(prefix)
        self.index_path = self.prefix + ".index"
        try:
            with open(self.index_path, "rb") as handle:
                index = handle.read()
        except OSError as exc:
            raise CheckpointFormatError(f"{self.index_path}: cannot read index file: {exc}") from exc
        self._header, self._entries = self._parse_index(index)

    def _parse_index(self, index: bytes) -> Tuple[_Header, Dict[str, TensorInfo]]:
        source = self.index_path
        header: Optional[_Header] = None
        entries: Dict[str, TensorInfo] = {}
        for key, value in _table_entries(index, source):
            if key == b"":
                header = _parse_header(value, source)
                self._check_header(header)
                continue
            if key[:1] == b"\x00":
                continue  # data of one slice of a partitioned tensor (OrderedCode-encoded key)
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CheckpointFormatError(f"{source}: tensor name {key!r} is not UTF-8") from exc
            entries[name] = self._check_entry(_parse_entry(name, value, source), header)
        if header is None:
            raise CheckpointFormatError(f"{source}: no BundleHeaderProto (empty key) in the index")
        return header, entries

    def _check_header(self, header: _Header) -> None:
        if header.big_endian:
            raise UnsupportedCheckpointError(
                f"{self.index_path}: big-endian tensor bundle; only little-endian bundles are supported"
            )
        if header.min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in header.bad_consumers:
            raise UnsupportedCheckpointError(
                f"{self.index_path}: bundle requires reader version >= {header.min_consumer} "
                f"(this reader implements version {_BUNDLE_VERSION})"
            )

    def _check_entry(self, info: TensorInfo, header: Optional[_Header]) -> TensorInfo:
        where = f"{self.index_path}: tensor {info.name!r}"
        if header is None:
            raise CheckpointFormatError(f"{where} appears before the bundle header")
        if info.sliced:
            return info
        if info.shard_id >= header.num_shards:
            raise CheckpointFormatError(f"{where}: shard {info.shard_id} >= num_shards {header.num_shards}")
        if len(info.shape) > _MAX_RANK:
            raise UnsupportedCheckpointError(f"{where}: rank {len(info.shape)} exceeds numpy's limit {_MAX_RANK}")
        known = _DTYPES.get(info.dtype_enum)
        if known is not None and known[1] is not None:
            itemsize = np.dtype(known[1]).itemsize
            if math.prod(max(d, 1) for d in info.shape) * itemsize >= 1 << 63:
                raise CheckpointFormatError(f"{where}: shape {list(info.shape)} is impossibly large")
            expected = info.numel * itemsize
            if expected != info.size:
                raise CheckpointFormatError(
                    f"{where}: shape {list(info.shape)} of {info.dtype} needs {expected} bytes "
                    f"but the entry says {info.size}"
                )
        return info

    # ----------------------------------------------------------------------------------------

    @property
    def num_shards(self) -> int:
        return self._header.num_shards

    def shard_path(self, shard_id: int) -> str:
        """Path of data shard ``shard_id`` (``<prefix>.data-%05d-of-%05d``)."""
        return f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}"

    def variables(self) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
        """Map every tensor name to ``(dtype, shape)``, sorted by name as TF lists them."""
        return {name: (info.dtype, info.shape) for name, info in self._entries.items()}

    def info(self, name: str) -> TensorInfo:
        """The index entry of ``name`` (raises ``KeyError`` if absent)."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{self.index_path}: no tensor named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def required_shard_sizes(self) -> Dict[int, int]:
        """Bytes each data shard must have: the largest ``offset + size`` of its tensors."""
        sizes: Dict[int, int] = {}
        for info in self._entries.values():
            if not info.sliced:
                sizes[info.shard_id] = max(sizes.get(info.shard_id, 0), info.offset + info.size)
        return sizes

    def check_shards(self) -> List[ShardShortfall]:
        """Every data shard that is missing or shorter than the index requires (no data is read)."""
        problems = []
        for shard_id, expected in sorted(self.required_shard_sizes().items()):
            path = self.shard_path(shard_id)
            try:
                actual: Optional[int] = os.stat(path).st_size
                reason = ""
            except OSError as exc:
                actual, reason = None, exc.strerror or type(exc).__name__
            if actual is not None and actual >= expected:
                continue
            end = 0 if actual is None else actual
            lost = sorted((i for i in self._entries.values()
                           if not i.sliced and i.shard_id == shard_id and i.offset + i.size > end),
                          key=lambda i: (i.offset, i.name))
            problems.append(ShardShortfall(path, expected, actual, tuple(i.name for i in lost), reason))
        return problems

    def verify_tensor(self, name: str) -> None:
        """Check one tensor's stored CRC32C without decoding it (any dtype, strings included).

        The bytes are streamed in chunks, so memory stays small whatever the tensor's size. Raises
        :class:`ChecksumError` or :class:`CheckpointFormatError` (truncated/missing data)."""
        info = self.info(name)
        if info.sliced:
            raise UnsupportedCheckpointError(
                f"{self.index_path}: tensor {info.name!r} is partitioned into slices, which is not supported")
        if info.masked_crc is None:
            raise CheckpointFormatError(f"{self.index_path}: tensor {info.name!r} has no stored crc32c")
        if info.dtype_enum == _DT_STRING:  # its checksum covers the lengths as fixed-width integers
            raw = self._read_bytes(info)
            where = f"{self.shard_path(info.shard_id)}: tensor {info.name!r}"
            self._compare_crc(info, string_tensor_crc(raw, int(np.prod(info.shape, dtype=np.int64)), where))
            return
        with self._open_extent(info) as (handle, path):
            chunk = np.empty(min(info.size, _VERIFY_CHUNK), dtype=np.uint8)
            view, crc, remaining = memoryview(chunk), 0, info.size
            while remaining:
                got = handle.readinto(view[: min(remaining, len(view))])
                if not got:
                    raise CheckpointFormatError(f"{path}: short read of {info.name!r}: "
                                                f"{info.size - remaining} of {info.size} bytes")
                crc = crc32c(view[:got], crc)
                remaining -= got
        self._compare_crc(info, crc)

    def verify(self, names: Optional[Sequence[str]] = None) -> Dict[str, TFCheckpointError]:
        """Check the CRC32C of ``names`` (default: every tensor); returns ``{name: error}`` of the bad ones."""
        problems: Dict[str, TFCheckpointError] = {}
        wanted = list(self._entries) if names is None else list(names)
        for name in sorted(wanted, key=lambda n: (self.info(n).shard_id, self.info(n).offset, n)):
            try:
                self.verify_tensor(name)
            except TFCheckpointError as error:
                problems[name] = error
        return problems

    def get_tensor(self, name: str) -> np.ndarray:
        """Read, checksum and decode one tensor."""
        info = self.info(name)
        self._check_readable(info)
        raw = self._read_bytes(info)
        self._verify_crc(info, raw)
        return self._decode(info, raw)

    def iter_tensors(self) -> Iterator[Tuple[str, np.ndarray]]:
        """Yield ``(name, array)`` one tensor at a time in file order, skipping string tensors."""
        order = sorted(self._entries.values(), key=lambda i: (i.shard_id, i.offset, i.name))
        for info in order:
            if info.dtype_enum == _DT_STRING:
                warnings.warn(f"{self.index_path}: skipping string tensor {info.name!r}", stacklevel=2)
                continue
            yield info.name, self.get_tensor(info.name)

    # ----------------------------------------------------------------------------------------

    def _check_readable(self, info: TensorInfo) -> None:
        where = f"{self.index_path}: tensor {info.name!r}"
        if info.sliced:
            raise UnsupportedCheckpointError(f"{where} is partitioned into slices, which is not supported")
        if info.dtype_enum == _DT_STRING:
            raise UnsupportedCheckpointError(f"{where} is a string tensor; string tensors are not supported")
        if info.dtype_enum not in _DTYPES:
            raise UnsupportedCheckpointError(f"{where} has unsupported dtype enum {info.dtype_enum}")

    def _read_bytes(self, info: TensorInfo) -> np.ndarray:
        with self._open_extent(info) as (handle, path):
            raw = np.empty(info.size, dtype=np.uint8)
            got = handle.readinto(memoryview(raw))
        if got != info.size:
            raise CheckpointFormatError(f"{path}: short read of {info.name!r}: {got} of {info.size} bytes")
        return raw

    @contextlib.contextmanager
    def _open_extent(self, info: TensorInfo) -> Iterator[Tuple[BinaryIO, str]]:
        """The tensor's data shard, checked to hold its bytes and positioned at them."""
        path = self.shard_path(info.shard_id)
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise CheckpointFormatError(f"{path}: cannot open data shard of {info.name!r}: {exc}") from exc
        with handle:
            self._check_extent(info, path, os.fstat(handle.fileno()).st_size)
            handle.seek(info.offset)
            yield handle, path

    @staticmethod
    def _check_extent(info: TensorInfo, path: str, file_size: int) -> None:
        if info.offset + info.size > file_size:
            raise CheckpointFormatError(
                f"{path}: data file is truncated: tensor {info.name!r} needs bytes "
                f"[{info.offset}, {info.offset + info.size}) but the file has {file_size} bytes"
            )

    def _verify_crc(self, info: TensorInfo, raw: np.ndarray) -> None:
        if info.masked_crc is None:
            raise CheckpointFormatError(f"{self.index_path}: tensor {info.name!r} has no stored crc32c")
        self._compare_crc(info, crc32c(raw))

    def _compare_crc(self, info: TensorInfo, actual: int) -> None:
        expected = unmask_crc(info.masked_crc)
        if expected != actual:
            raise ChecksumError(
                f"{self.shard_path(info.shard_id)}: checksum mismatch for tensor {info.name!r} "
                f"({info.size} bytes at offset {info.offset}): stored crc32c {expected} "
                f"vs computed {actual}"
            )

    @staticmethod
    def _decode(info: TensorInfo, raw: np.ndarray) -> np.ndarray:
        name, np_dtype = _DTYPES[info.dtype_enum]
        values = raw.view(np.dtype(np_dtype))
        if name == "bfloat16":
            values = (values.astype(np.uint32) << 16).view(np.float32)
        elif name == "bool":
            values = values.view(np.bool_)
        return values.reshape(info.shape).astype(values.dtype.newbyteorder("="), copy=False)

    def __repr__(self) -> str:
        return f"TFCheckpointReader({self.prefix!r}, tensors={len(self)}, shards={self.num_shards})"
