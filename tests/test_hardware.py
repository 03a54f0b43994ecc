"""The hardware catalog: enough entries, each sourced, vendor figures as the reference lists them."""

from __future__ import annotations

import json

import pytest

from planner.cli import main
from planner.loaders.hardware import find_hardware, load_hardware_catalog
from planner.errors import CatalogError

CATALOG = load_hardware_catalog()

REQUIRED = [
    "v100-sxm2-32gb", "a10g", "a40", "a100-pcie-40gb", "a100-sxm-80gb", "a100-pcie-80gb", "l4", "l40s", "h100-pcie",
    "h100-sxm", "h100-nvl", "h200", "b200", "gb200", "dgx-spark-gb10", "rtx-3060-12gb", "rtx-3080", "rtx-3090",
    "rtx-4060-ti-16gb", "rtx-4070-ti", "rtx-4080", "rtx-4090", "rtx-5080", "rtx-5090", "rtx-a5000", "rtx-a6000",
    "rtx-6000-ada", "rtx-pro-6000", "mi250x", "mi300x", "mi325x", "rx-7900-xtx",
    "m1-7c-8gb", "m1-max-32c-64gb", "m2-ultra-76c-192gb", "m3-max-40c-64gb", "m3-ultra-80c-512gb", "m4-max-40c-128gb",
]

# Memory bandwidth in GB/s, vendor figures (NVIDIA, AMD and Apple product pages, as each catalog entry cites).
REFERENCE_BANDWIDTH = {
    "rtx-3090": 936, "rtx-4090": 1008, "a100-sxm-80gb": 2039, "a100-pcie-80gb": 1935, "h100-sxm": 3350,
    "h100-pcie": 2000, "h200": 4800, "b200": 8000, "mi300x": 5300, "l40s": 864, "dgx-spark-gb10": 273,
    "m1-7c-8gb": 68.25, "m1-max-32c-64gb": 400, "m2-ultra-76c-192gb": 800, "m3-max-40c-64gb": 400,
    "m4-max-40c-128gb": 546,
}


def test_catalog_size_and_required_entries() -> None:
    assert len(CATALOG) >= 40
    missing = [i for i in REQUIRED if i not in CATALOG]
    assert not missing


@pytest.mark.parametrize("device_id", sorted(CATALOG))
def test_every_entry_is_sourced_and_complete(device_id: str) -> None:
    spec = CATALOG[device_id]
    assert len(spec.source) >= 8
    assert spec.power_w, "catalog entries state their power"
    assert spec.fp16_tflops >= spec.fp32_tflops * 0.99
    if spec.kind == "apple-silicon":
        assert spec.unified_memory and 0.5 <= spec.gpu_memory_fraction <= 0.9


@pytest.mark.parametrize(("device_id", "bandwidth"), sorted(REFERENCE_BANDWIDTH.items()))
def test_bandwidth_matches_the_reference(device_id: str, bandwidth: float) -> None:
    assert CATALOG[device_id].memory_bandwidth_gb_s == pytest.approx(bandwidth, rel=0.01)


def test_typo_suggests_the_closest_id() -> None:
    with pytest.raises(CatalogError) as err:
        find_hardware("rtx-4009")
    assert err.value.suggestion == "rtx-4090"


def test_cli_list_filter_and_show(runner) -> None:
    everything = json.loads(runner.invoke(main, ["hardware", "list", "--format", "json"]).output)
    assert len(everything) == len(CATALOG)
    apple = json.loads(runner.invoke(main, ["hardware", "list", "--filter", "vendor=apple", "--format", "json"]).output)
    assert apple and all(d["vendor"] == "apple" for d in apple)
    big = json.loads(runner.invoke(main, ["hardware", "list", "--filter", "min_memory_gib=100", "--filter", "vendor=nvidia",
                                          "--format", "json"]).output)
    assert {d["id"] for d in big} >= {"h200", "b200"} and all(d["memory_gib"] >= 100 for d in big)
    assert "rtx-4090" in runner.invoke(main, ["hardware", "list", "--filter", "4090"]).output
    shown = runner.invoke(main, ["hardware", "show", "h100-sxm"])
    assert shown.exit_code == 0 and "3350" in shown.output
    assert runner.invoke(main, ["hardware", "show", "h100-sxn"]).exit_code == 2
    assert runner.invoke(main, ["hardware", "list", "--filter", "colour=red"]).exit_code == 2
