"""Read a .safetensors file's header only: tensor names, dtypes and shapes, never the data.

Format (huggingface/safetensors README): 8 bytes little-endian header length N, then N bytes of
JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from planner.errors import InputError
from planner.limits import MAX_CHECKPOINT_TENSORS, MAX_SAFETENSORS_HEADER_BYTES
from planner.loaders.files import open_regular
from planner.loaders.yamlfile import parse_json_integer
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "F4": 0.5,
}


@dataclass(frozen=True)
class HeaderTensor:
    """One tensor as the header describes it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _read_raw_header(path: Path) -> tuple[bytes, int]:
    """The JSON header's bytes and the size of the data section, lengths checked before reading."""
    file = str(path)
    with open_regular(path, what="safetensors file") as (handle, size):
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise InputError("not a safetensors file: shorter than its 8-byte header length", file=file)
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_SAFETENSORS_HEADER_BYTES or length > size - 8:
            raise InputError(f"not a safetensors file: header length {length:,} bytes exceeds "
                             f"{min(MAX_SAFETENSORS_HEADER_BYTES, size - 8):,}", file=file)
        try:
            raw = handle.read(length)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    if len(raw) < length:
        raise InputError("not a safetensors file: it ends inside its header", file=file)
    return raw, size - 8 - length


def read_safetensors_header(path: Path) -> tuple[list[HeaderTensor], dict[str, str]]:
    """Tensors and metadata of one file; malformed files raise InputError naming the file."""
    file = str(path)
    raw, data_size = _read_raw_header(path)
    try:
        header = json.loads(raw.decode("utf-8"), parse_int=parse_json_integer)
    except RecursionError:
        raise InputError("not a safetensors file: its header is nested too deeply", file=file) from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, or an integer too long to convert
        raise InputError(f"not a safetensors file: its header is not JSON ({' '.join(str(exc).split())[:200]})",
                         file=file) from None
    if not isinstance(header, dict):
        raise InputError("not a safetensors file: its header is not a JSON object", file=file)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InputError("expected an object of strings", file=file, field="__metadata__")
    if len(header) > MAX_CHECKPOINT_TENSORS:
        raise InputError(f"{len(header):,} tensors; the limit is {MAX_CHECKPOINT_TENSORS:,}", file=file)
    tensors = []
    spans = []
    for name, info in header.items():
        try:
            dtype = str(info["dtype"])
            shape = tuple(_index(x) for x in info["shape"])
            begin, end = (_index(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InputError("tensor entry needs dtype, shape (whole numbers) and two data_offsets", file=file, field=name) from None
        if dtype not in DTYPE_BYTES:
            raise InputError(f"unknown dtype '{dtype}'", file=file, field=name)
        if len(shape) > 8 or not 0 <= begin <= end <= data_size:
            raise InputError(f"data_offsets [{begin}, {end}] outside the file's {data_size:,} data bytes", file=file, field=name)
        expected = math.prod(shape) * DTYPE_BYTES[dtype]
        if end - begin != expected:
            raise InputError(f"{end - begin:,} bytes for a {dtype} tensor of shape {list(shape)} ({expected:,.0f} expected)",
                             file=file, field=name)
        tensors.append(HeaderTensor(name, dtype, shape, end - begin))
        if end > begin:
            spans.append((begin, end, name))
    _check_overlaps(spans, file)
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def _check_overlaps(spans: list[tuple[int, int, str]], file: str) -> None:
    """Two tensors may not share bytes (each would be counted, and one of them is corrupt)."""
    spans.sort()
    for (_, end, name), (begin, _, other) in zip(spans, spans[1:]):
        if begin < end:
            raise InputError(f"its bytes overlap those of '{name}'", file=file, field=other)
