"""The one place that converts units. GB = 10^9 bytes, GiB = 2^30 bytes; output says which."""

from __future__ import annotations

import math
import re

from planner.errors import InputError

GB = 10**9
GiB = 2**30
MiB = 2**20

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*$", re.IGNORECASE)


def parse_count(text: str | int | float, *, field: str = "--params", maximum: float = 10**15) -> int:
    """Read a parameter count such as '70B', '7.5e9', '405M' or 8030261248 as an integer."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        shown = str(text) if len(str(text)) <= 40 else str(text)[:37] + "..."
        if str(text).strip().lower() in ("nan", "+nan", "-nan"):
            raise InputError("NaN is not a number; expected a count like 70B, 7.5e9 or 405M", field=field)
        match = _SIZE_RE.match(str(text)) if len(str(text)) <= 100 else None
        if not match:
            raise InputError(f"expected a count like 70B, 7.5e9 or 405M, got '{shown}'", field=field)
        value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if not math.isfinite(value) or value > maximum:
        raise InputError(f"expected a count of at most {maximum:,.0f}, got '{text}'", field=field)
    if value < 0.5:
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


def format_bytes(num_bytes: float) -> str:
    """A size for people in binary units: 512 B, 4 MiB, 1.5 GiB."""
    for scale, suffix in ((2**40, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (2**10, "KiB")):
        if num_bytes >= scale:
            return f"{num_bytes / scale:,.3g} {suffix}"
    return f"{num_bytes:,.0f} B"


def ms_to_s(milliseconds: float) -> float:
    """Milliseconds to seconds."""
    return milliseconds / 1000.0


def us_to_s(microseconds: float) -> float:
    """Microseconds to seconds."""
    return microseconds * 1e-6


def gb_s_to_bytes_s(gb_per_s: float) -> float:
    """GB/s (10^9 bytes per second) to bytes per second."""
    return gb_per_s * GB


def tflops_to_flops(tflops: float) -> float:
    """TFLOPS (10^12 per second) to FLOP/s."""
    return tflops * 1e12


def gib_to_bytes(gib: float) -> int:
    """GiB to whole bytes."""
    return int(gib * GiB)


def gb_to_bytes(gb: float) -> int:
    """GB to whole bytes."""
    return int(gb * GB)


def to_billions(count: float) -> float:
    """A count (parameters) in billions."""
    return count / 1e9
