"""Fitted speed-model efficiencies per engine class and device class (planner/catalog/calibration.yaml)."""

from __future__ import annotations

import functools

from planner.loaders.catalog_files import read_catalog_file
from planner.schemas.hardware import HardwareSpec
from planner.schemas.speed import SpeedCalibration
from planner.units import ms_to_s, us_to_s

DEFAULT_ENGINE_CLASS = "llama.cpp"


@functools.cache
def load_calibrations() -> dict[str, dict[str, SpeedCalibration]]:
    """Engine class -> device class -> calibration; a class without measurements borrows
    another's (`borrow: class` in the same engine class, or `borrow: engine/class`), with any
    figure the entry states itself in place of the borrowed one."""
    engines = read_catalog_file("calibration.yaml").data["engines"]
    out: dict[str, dict[str, SpeedCalibration]] = {engine: {} for engine in engines}

    def resolve(engine: str, name: str, seen: tuple = ()) -> SpeedCalibration:
        if name in out[engine]:
            return out[engine][name]
        if (engine, name) in seen:
            raise ValueError(f"calibration.yaml: {engine}/{name} borrows in a circle")
        entry = engines[engine]["classes"][name]
        if "borrow" in entry:
            source_engine, _, source_class = entry["borrow"].rpartition("/")
            base = resolve(source_engine or engine, source_class, (*seen, (engine, name))).__dict__
            calibration = SpeedCalibration(**{**base, **_fields(entry), "engine_class": engine})
        else:
            calibration = SpeedCalibration(**_fields(entry), engine_class=engine)
        out[engine][name] = calibration
        return calibration

    for engine, body in engines.items():
        for name in body["classes"]:
            resolve(engine, name)
    return out


def _fields(entry: dict) -> dict:
    """The SpeedCalibration fields an entry states, in seconds."""
    fields = {
        "plain_bandwidth_efficiency": entry.get("plain_bandwidth_efficiency"),
        "quantized_bandwidth_efficiency": entry.get("quantized_bandwidth_efficiency"),
        "compute_efficiency": entry.get("compute_efficiency"),
        "quantized_compute_efficiency": entry.get("quantized_compute_efficiency"),
        "kv_bandwidth_efficiency": entry.get("kv_bandwidth_efficiency"),
        "moe_kernel_efficiency": entry.get("moe_kernel_efficiency"),
        "step_overhead_s": ms_to_s(entry["step_overhead_ms"]) if "step_overhead_ms" in entry else None,
        "layer_overhead_s": us_to_s(entry["layer_overhead_us"]) if "layer_overhead_us" in entry else None,
        "moe_layer_overhead_s": us_to_s(entry["moe_layer_overhead_us"]) if "moe_layer_overhead_us" in entry else None,
        "hop_overhead_s": ms_to_s(entry["hop_overhead_ms"]) if "hop_overhead_ms" in entry else None,
        "allreduce_overhead_s": us_to_s(entry["allreduce_overhead_us"]) if "allreduce_overhead_us" in entry else None,
        "network_hop_overhead_s": ms_to_s(entry["network_hop_overhead_ms"]) if "network_hop_overhead_ms" in entry else None,
        "request_overhead_s": ms_to_s(entry["request_overhead_ms"]) if "request_overhead_ms" in entry else None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def load_calibration(engine_class: str = DEFAULT_ENGINE_CLASS) -> dict[str, SpeedCalibration]:
    """Every device class's calibration for one engine class."""
    return load_calibrations()[engine_class]


def find_calibration(device: HardwareSpec, engine_class: str = DEFAULT_ENGINE_CLASS) -> SpeedCalibration:
    """The calibration for a device under an engine class (the generic GPU class when its own is missing)."""
    table = load_calibration(engine_class)
    return table.get(device.calibration_class) or table["other-gpu"]
