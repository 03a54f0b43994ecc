"""`plan hardware list` and `plan hardware show`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from planner.errors import InputError
from planner.loaders.hardware import find_hardware, load_hardware_catalog
from planner.report.table import to_text_table
from planner.schemas.hardware import HardwareSpec

_FILTER_KEYS = ("vendor", "kind", "id", "name", "min_memory_gib", "tensor_cores", "unified_memory")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"min_memory_gib needs a number, got {text[:40]!r}", field="--filter") from None
    if math.isnan(value):
        raise InputError("min_memory_gib: NaN is not a number", field="--filter")
    if not math.isfinite(value):
        raise InputError(f"min_memory_gib needs a finite number, got {text[:40]!r}", field="--filter")
    return value


def _matches(spec: HardwareSpec, filters: list[str]) -> bool:
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            text = item.lower()
            if text not in spec.id and text not in spec.name.lower():
                return False
            continue
        if key == "min_memory_gib":
            if spec.memory_gib < _number(value):
                return False
        elif key in ("tensor_cores", "unified_memory"):
            if getattr(spec, key) != (value.lower() in ("1", "true", "yes")):
                return False
        elif key in ("vendor", "kind"):
            if getattr(spec, key) != value.lower():
                return False
        elif value.lower() not in str(getattr(spec, key)).lower():
            return False
    return True


def _row(spec: HardwareSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def run_hardware_list(filters: tuple[str, ...]) -> tuple[list[dict[str, Any]], Callable[[Any], str]]:
    """Catalog devices, optionally filtered by `key=value` or a substring of the id or name."""
    for item in filters:
        key, sep, value = item.partition("=")
        if key == "min_memory_gib" and sep:
            _number(value)
        if sep and key not in _FILTER_KEYS:
            raise InputError(f"unknown filter key '{key}'; use one of {', '.join(_FILTER_KEYS)} or a plain substring",
                             field="--filter")
    rows = [_row(s) for s in load_hardware_catalog().values() if _matches(s, list(filters))]

    def text(data: list[dict[str, Any]]) -> str:
        table = [[r["id"], r["vendor"], f"{r['memory_gib']:g}", f"{r['memory_bandwidth_gb_s']:,.0f}",
                  f"{r['fp16_tflops']:,.1f}", "yes" if r["tensor_cores"] else "no",
                  f"{r['power_w']:,.0f}" if r.get("power_w") else "",
                  f"{r['price']['usd']:,.0f} ({r['price']['date']})" if r.get("price") else ""] for r in data]
        return to_text_table(["id", "vendor", "memory GiB", "bandwidth GB/s", "fp16 TFLOPS", "tensor cores", "power W", "price USD"],
                             table, right=[False, False, True, True, True, False, True, True]) + f"\n{len(data)} devices"
    return rows, text


def run_hardware_show(device_id: str) -> tuple[dict[str, Any], Callable[[Any], str]]:
    """One catalog device, every field."""
    data = _row(find_hardware(device_id, field="ID"))

    def text(d: dict[str, Any]) -> str:
        rows = [[k, v if not isinstance(v, dict) else ", ".join(f"{a}={b}" for a, b in v.items())] for k, v in d.items()]
        return to_text_table(["field", "value"], rows, right=[False, False])
    return data, text
