"""Read a GGUF file's header only: metadata key/values and tensor infos, never the tensor data.

Format (ggml docs/gguf.md and include/gguf.h; gguf-py gguf/gguf_reader.py), little-endian: b"GGUF", uint32
version, uint64 tensor count, uint64 key count; the key/values (string key, uint32 value type, value); the
tensor infos (string name, uint32 n_dims, n_dims uint64 dims in ggml ne order, uint32 ggml type, uint64
offset into the data section), which starts at the next multiple of `general.alignment` (default 32). A
string is a uint64 length and UTF-8 bytes; an array is a uint32 item type, a uint64 count and the items.

Every count and length is checked against its limit (planner/limits.py) and against the bytes left in the
file before anything is read or allocated for it, so a hostile file costs bounded time and memory, and any
malformed input is an InputError naming the file and the metadata key or tensor.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from planner.errors import InputError
from planner.limits import (MAX_CHECKPOINT_TENSORS, MAX_GGUF_ARRAY_ITEMS, MAX_GGUF_METADATA_KEYS,
                            MAX_GGUF_STRING_BYTES, MAX_GGUF_TENSOR_DIMS)
from planner.loaders.files import open_regular

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # version 1 used 32-bit counts and lengths; ggml dropped it
DEFAULT_ALIGNMENT = 32
MAX_ARRAY_DEPTH = 4  # the spec allows arrays of arrays; ggml itself reads none, so real files stay flat
MAX_KEPT_ARRAY_ITEMS = 4096  # numeric arrays this short keep their values (per-layer head counts, windows)
MAX_ELEMENTS = 2**53  # above this an element count is no longer exact as a float

# (name, block size, bytes per block) by ggml type id: ggml/src/ggml.c `type_traits`, gguf-py GGML_QUANT_SIZES.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}

# Fixed-size value types: id -> (name, little-endian struct format).
_SCALARS = {0: ("UINT8", "B"), 1: ("INT8", "b"), 2: ("UINT16", "H"), 3: ("INT16", "h"), 4: ("UINT32", "I"),
            5: ("INT32", "i"), 6: ("FLOAT32", "f"), 7: ("BOOL", "?"), 10: ("UINT64", "Q"), 11: ("INT64", "q"),
            12: ("FLOAT64", "d")}
STRING, ARRAY, UINT32 = 8, 9, 4
_STRUCTS = {vtype: struct.Struct("<" + fmt) for vtype, (_, fmt) in _SCALARS.items()}
VALUE_TYPES = {**{vtype: name for vtype, (name, _) in _SCALARS.items()}, STRING: "STRING", ARRAY: "ARRAY"}
# The fewest bytes one item can take (a string is at least its length, an array its type and count):
# a claimed count is checked against the bytes left before any item is read.
_MIN_BYTES = {**{vtype: s.size for vtype, s in _STRUCTS.items()}, STRING: 8, ARRAY: 12}
_MIN_KV_BYTES = 8 + 4 + 1  # empty key, value type, one-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # empty name, n_dims, one dim, type, offset
_U32, _U64 = _STRUCTS[UINT32], _STRUCTS[10]
_CHUNK_BYTES = 2**20  # read-ahead when walking a string array


@dataclass(frozen=True)
class GGUFArray:
    """An array value: its item type, its length, and its values when it is short and numeric."""

    item_type: str
    length: int
    values: tuple[int | float | bool, ...] | None


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor info; shape in ggml ne order (ne[0] = elements per row), offset absolute in the file."""

    name: str
    shape: tuple[int, ...]
    type_name: str
    n_elements: int
    n_bytes: int
    offset: int


@dataclass(frozen=True)
class GGUFHeader:
    """Everything before the tensor data."""

    version: int
    metadata: dict[str, object]
    tensors: tuple[GGUFTensor, ...]
    alignment: int
    data_offset: int


class _Source:
    """A buffered handle that knows the bytes left, so nothing is read or skipped that is not there."""

    def __init__(self, handle: BinaryIO, size: int, file: str) -> None:
        self.handle, self.size, self.file, self.pos = handle, size, file, 0
        self.array_items = 0  # over every array in the file, against MAX_GGUF_ARRAY_ITEMS

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, file=self.file, field=field)

    def left(self) -> int:
        return self.size - self.pos

    def check_room(self, n: int, what: str, field: str | None) -> None:
        if n > self.size - self.pos:
            raise self.error(f"the file ends inside {what} ({n:,} bytes needed, {self.left():,} left)", field)

    def read(self, n: int, what: str, field: str | None) -> bytes:
        self.check_room(n, what, field)
        data = self.handle.read(n)
        if len(data) != n:  # the file shrank while it was read
            raise self.error(f"the file ends inside {what}", field)
        self.pos += n
        return data

    def skip(self, n: int, what: str, field: str | None) -> None:
        self.check_room(n, what, field)
        self.handle.seek(n, 1)
        self.pos += n

    def u32(self, what: str, field: str | None) -> int:
        return int(_U32.unpack(self.read(4, what, field))[0])

    def u64(self, what: str, field: str | None) -> int:
        return int(_U64.unpack(self.read(8, what, field))[0])


def read_gguf_header(path: Path) -> GGUFHeader:
    """The header of one .gguf file; a malformed file raises InputError naming the file and field."""
    with open_regular(path, what="GGUF file") as (handle, size):
        source = _Source(handle, size, str(path))
        try:
            return read_header(source)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None


def read_header(src: _Source) -> GGUFHeader:
    magic = src.handle.read(4)
    if magic != MAGIC:
        raise src.error("not a GGUF file: it is empty" if not magic else
                        f"not a GGUF file: it starts with {magic!r}, not {MAGIC!r}")
    src.pos = 4
    version = check_version(src, src.u32("the version", None))
    n_tensors = src.u64("the tensor count", None)
    n_keys = src.u64("the metadata key count", None)
    check_count(src, n_keys, MAX_GGUF_METADATA_KEYS, _MIN_KV_BYTES, "metadata", "keys")
    check_count(src, n_tensors, MAX_CHECKPOINT_TENSORS, _MIN_TENSOR_INFO_BYTES, "the header", "tensors")
    metadata, alignment = read_metadata(src, n_keys)
    # Again, now that the metadata's bytes are spent: the tensor infos must fit in what is left.
    check_count(src, n_tensors, MAX_CHECKPOINT_TENSORS, _MIN_TENSOR_INFO_BYTES, "the header", "tensors")
    infos = read_tensor_infos(src, n_tensors)
    data_offset = -(-src.pos // alignment) * alignment
    tensors = tuple(place_tensor(src, info, data_offset, alignment) for info in infos)
    check_overlaps(src, tensors)
    return GGUFHeader(version, metadata, tensors, alignment, data_offset)


def check_version(src: _Source, version: int) -> int:
    if version in VERSIONS:
        return version
    if version == 1:
        raise src.error("GGUF version 1 is no longer supported (it predates 64-bit counts); "
                        "convert the model again with a current llama.cpp")
    if version and not version & 0xFFFF:  # 3 read with the wrong byte order is 0x03000000
        raise src.error(f"GGUF version {version:#010x} looks like a big-endian file; only little-endian is read")
    raise src.error(f"GGUF version {version:,} is not supported; versions 2 and 3 are")


def check_count(src: _Source, count: int, limit: int, min_bytes: int, what: str, noun: str,
                field: str | None = None) -> None:
    """Refuse a claimed count above its limit, or more items than the bytes left could hold."""
    if count > limit:
        raise src.error(f"{what} claims {count:,} {noun}; the limit is {limit:,}", field)
    if count * min_bytes > src.left():
        raise src.error(f"{what} claims {count:,} {noun}, but the {src.left():,} bytes left in the file "
                        f"hold at most {src.left() // min_bytes:,}", field)


def read_string_length(src: _Source, what: str, field: str | None) -> int:
    length = src.u64(f"the length of {what}", field)
    if length > MAX_GGUF_STRING_BYTES:
        raise src.error(f"{what} claims {length:,} bytes; the limit is {MAX_GGUF_STRING_BYTES:,}", field)
    src.check_room(length, what, field)
    return length


def read_string(src: _Source, what: str, field: str | None) -> str:
    raw = src.read(read_string_length(src, what, field), what, field)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise src.error(f"{what} is not UTF-8 (byte {exc.start:,})",
                        field or raw.decode("utf-8", "replace")) from None


def read_metadata(src: _Source, count: int) -> tuple[dict[str, object], int]:
    metadata: dict[str, object] = {}
    alignment = DEFAULT_ALIGNMENT
    for index in range(count):
        key = read_string(src, f"metadata key {index + 1:,} of {count:,}", None)
        if key in metadata:
            raise src.error("duplicate metadata key", key)
        vtype = src.u32("the value type", key)
        metadata[key] = read_value(src, vtype, key, depth=0)
        if key == "general.alignment":
            alignment = check_alignment(src, vtype, metadata[key])
    return metadata, alignment


def read_value(src: _Source, vtype: int, key: str, depth: int) -> object:
    if vtype in _STRUCTS:
        layout = _STRUCTS[vtype]
        return layout.unpack(src.read(layout.size, f"the {VALUE_TYPES[vtype]} value", key))[0]
    if vtype == STRING:
        return read_string(src, "the string value", key)
    if vtype == ARRAY:
        return read_array(src, key, depth + 1)
    raise src.error(f"unknown value type {vtype:,} (known: 0 to 12)", key)


def read_array(src: _Source, key: str, depth: int) -> GGUFArray:
    if depth > MAX_ARRAY_DEPTH:
        raise src.error(f"arrays nested {depth} deep; the limit is {MAX_ARRAY_DEPTH}", key)
    item_type = src.u32("the array's item type", key)
    if item_type not in VALUE_TYPES:
        raise src.error(f"unknown array item type {item_type:,} (known: 0 to 12)", key)
    length = src.u64("the array's length", key)
    src.array_items += length
    if src.array_items > MAX_GGUF_ARRAY_ITEMS:
        raise src.error(f"arrays claim {src.array_items:,} items so far; the limit over all arrays is "
                        f"{MAX_GGUF_ARRAY_ITEMS:,}", key)
    check_count(src, length, MAX_GGUF_ARRAY_ITEMS, _MIN_BYTES[item_type], "the array",
                f"{VALUE_TYPES[item_type]} items", key)
    values = None
    if item_type in _STRUCTS and length <= MAX_KEPT_ARRAY_ITEMS:
        raw = src.read(length * _STRUCTS[item_type].size, "the array", key)
        values = tuple(item for (item,) in _STRUCTS[item_type].iter_unpack(raw))
    elif item_type in _STRUCTS:
        src.skip(length * _STRUCTS[item_type].size, "the array", key)
    elif item_type == STRING:  # token lists: counted, not kept
        skip_strings(src, length, key)
    else:
        for _ in range(length):
            read_array(src, key, depth + 1)
    return GGUFArray(VALUE_TYPES[item_type], length, values)


def skip_strings(src: _Source, count: int, key: str) -> None:
    """Walk a string array's lengths in memory chunks: a 262k-token vocabulary is not 262k small reads."""
    what = "a string in the array"
    chunk, at = b"", 0
    for _ in range(count):
        if len(chunk) - at < 8:
            chunk, at = chunk[at:] + src.read(min(_CHUNK_BYTES, src.left()), what, key), 0
            if len(chunk) < 8:
                raise src.error(f"the file ends inside the length of {what}", key)
        (length,) = _U64.unpack_from(chunk, at)
        if length > MAX_GGUF_STRING_BYTES:
            raise src.error(f"{what} claims {length:,} bytes; the limit is {MAX_GGUF_STRING_BYTES:,}", key)
        at += 8 + length
        if at > len(chunk):  # the string runs on past the chunk: skip its rest in the file
            src.skip(at - len(chunk), what, key)
            chunk, at = b"", 0
    src.handle.seek(at - len(chunk), 1)  # give back what was read ahead
    src.pos -= len(chunk) - at


def check_alignment(src: _Source, vtype: int, value: object) -> int:
    # ggml reads general.alignment only as a UINT32 (gguf_get_val_u32 asserts the type).
    if vtype != UINT32 or not isinstance(value, int):  # isinstance: for the type checker
        raise src.error(f"must be a UINT32, found a {VALUE_TYPES[vtype]}", "general.alignment")
    if value == 0 or value & (value - 1):
        raise src.error(f"{value:,} is not a power of two", "general.alignment")
    return value


def read_tensor_infos(src: _Source, count: int) -> list[tuple[str, tuple[int, ...], int, int]]:
    infos = []
    names: set[str] = set()
    for index in range(count):
        name = read_string(src, f"the name of tensor {index + 1:,} of {count:,}", None)
        if name in names:
            raise src.error("duplicate tensor name", name)
        names.add(name)
        n_dims = src.u32("the number of dimensions", name)
        if not 1 <= n_dims <= MAX_GGUF_TENSOR_DIMS:
            raise src.error(f"{n_dims:,} dimensions; expected 1 to {MAX_GGUF_TENSOR_DIMS}", name)
        shape = struct.unpack(f"<{n_dims}Q", src.read(8 * n_dims, "the dimensions", name))
        type_id = src.u32("the ggml type", name)
        check_shape(src, name, shape, type_id)
        infos.append((name, shape, type_id, src.u64("the data offset", name)))
    return infos


def check_shape(src: _Source, name: str, shape: tuple[int, ...], type_id: int) -> None:
    if 0 in shape:
        raise src.error(f"shape {list(shape)} has a dimension of 0", name)
    n_elements = math.prod(shape)  # at most 8 factors below 2**64: a small exact integer
    if n_elements > MAX_ELEMENTS:
        raise src.error(f"shape {list(shape)} has {n_elements:,} elements; the limit is 2^53", name)
    if type_id not in GGML_TYPES:
        raise src.error(f"unknown ggml type {type_id:,}", name)
    type_name, block, _ = GGML_TYPES[type_id]
    # Blocks run along a row, so each row (ne[0]) holds whole blocks, and so does the tensor.
    if shape[0] % block:
        raise src.error(f"{type_name} packs {block} elements a block, but a row has {shape[0]:,}", name)


def place_tensor(src: _Source, info: tuple[str, tuple[int, ...], int, int], data_offset: int,
                 alignment: int) -> GGUFTensor:
    name, shape, type_id, offset = info
    type_name, block, block_bytes = GGML_TYPES[type_id]
    n_elements = math.prod(shape)
    n_bytes = n_elements // block * block_bytes
    if offset % alignment:
        raise src.error(f"data offset {offset:,} is not a multiple of the alignment {alignment}", name)
    start = data_offset + offset
    if start + n_bytes > src.size:
        raise src.error(f"its {n_bytes:,} bytes at offset {start:,} run past the end of the "
                        f"{src.size:,}-byte file", name)
    return GGUFTensor(name, shape, type_name, n_elements, n_bytes, start)


def check_overlaps(src: _Source, tensors: tuple[GGUFTensor, ...]) -> None:
    ordered = sorted(tensors, key=lambda tensor: tensor.offset)
    for before, after in zip(ordered, ordered[1:]):
        if after.offset < before.offset + before.n_bytes:
            raise src.error(f"its bytes from offset {after.offset:,} overlap {before.name} "
                            f"(bytes {before.offset:,} to {before.offset + before.n_bytes:,})", after.name)
