"""Fitted speed-model efficiencies per device class (planner/catalog/calibration.yaml)."""

from __future__ import annotations

import functools

from planner.loaders.catalog_files import read_catalog_file
from planner.schemas.hardware import HardwareSpec
from planner.schemas.speed import SpeedCalibration
from planner.units import ms_to_s


@functools.cache
def load_calibration() -> dict[str, SpeedCalibration]:
    """Every device class's calibration; classes without measurements borrow another's."""
    data = read_catalog_file("calibration.yaml").data["classes"]
    out: dict[str, SpeedCalibration] = {}
    for name, entry in data.items():
        if "borrow" in entry:
            continue
        out[name] = SpeedCalibration(
            plain_bandwidth_efficiency=entry["plain_bandwidth_efficiency"],
            quantized_bandwidth_efficiency=entry["quantized_bandwidth_efficiency"],
            compute_efficiency=entry["compute_efficiency"],
            step_overhead_s=ms_to_s(entry["step_overhead_ms"]),
            hop_overhead_s=ms_to_s(entry["hop_overhead_ms"]),
        )
    for name, entry in data.items():
        if "borrow" in entry:
            out[name] = out[entry["borrow"]]
    return out


def find_calibration(device: HardwareSpec) -> SpeedCalibration:
    """The calibration for a device (the generic GPU class when its own is missing)."""
    table = load_calibration()
    return table.get(device.calibration_class) or table["other-gpu"]
