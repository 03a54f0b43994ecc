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

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit the safetensors library itself enforces
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


def read_safetensors_header(path: Path) -> tuple[list[HeaderTensor], dict[str, str]]:
    """Tensors and metadata of one file; malformed files raise InputError naming the file."""
    file = str(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise InputError("not a safetensors file: shorter than its 8-byte header length", file=file)
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES or length > size - 8:
                raise InputError(f"not a safetensors file: header length {length:,} bytes exceeds "
                                 f"{min(MAX_HEADER_BYTES, size - 8):,}", file=file)
            raw = handle.read(length)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a safetensors file: its header is not JSON ({exc})", file=file) from None
    if not isinstance(header, dict):
        raise InputError("not a safetensors file: its header is not a JSON object", file=file)
    metadata = header.pop("__metadata__", None) or {}
    tensors = []
    data_size = size - 8 - length
    for name, info in header.items():
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(x) for x in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InputError("tensor entry needs dtype, shape and data_offsets", file=file, field=name) from None
        if dtype not in DTYPE_BYTES:
            raise InputError(f"unknown dtype '{dtype}'", file=file, field=name)
        if any(d < 0 for d in shape) or not 0 <= begin <= end <= data_size:
            raise InputError(f"data_offsets [{begin}, {end}] outside the file's {data_size:,} data bytes", file=file, field=name)
        expected = math.prod(shape) * DTYPE_BYTES[dtype]
        if end - begin != expected:
            raise InputError(f"{end - begin:,} bytes for a {dtype} tensor of shape {list(shape)} ({expected:,.0f} expected)",
                             file=file, field=name)
        tensors.append(HeaderTensor(name, dtype, shape, end - begin))
    return tensors, {str(k): str(v) for k, v in metadata.items()}
