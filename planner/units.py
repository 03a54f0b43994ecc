"""The one place that converts units. GB = 10^9 bytes, GiB = 2^30 bytes; output says which."""

from __future__ import annotations

import re

from planner.errors import InputError

GB = 10**9
GiB = 2**30
MiB = 2**20

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*$", re.IGNORECASE)


def parse_count(text: str | int | float, *, field: str = "--params") -> int:
    """Read a parameter count such as '70B', '7.5e9', '405M' or 8030261248 as an integer."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _SIZE_RE.match(str(text))
        if not match:
            raise InputError(
                f"expected a count like 70B, 7.5e9 or 405M, got '{text}'", field=field
            )
        value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if value <= 0:
        raise InputError(f"expected a positive count, got '{text}'", field=field)
    return int(round(value))


def to_gb(num_bytes: float) -> float:
    """Bytes to GB (10^9 bytes)."""
    return num_bytes / GB


def to_gib(num_bytes: float) -> float:
    """Bytes to GiB (2^30 bytes)."""
    return num_bytes / GiB


def bits_to_bytes(num_bits: float) -> float:
    """Bits to bytes."""
    return num_bits / 8.0


def format_count(value: int) -> str:
    """A parameter count for people: 8,030,261,248 (8.03 B)."""
    for scale, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if value >= scale:
            return f"{value:,} ({value / scale:.2f} {suffix})"
    return f"{value:,}"
