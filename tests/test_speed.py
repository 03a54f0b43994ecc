"""The decode speed model against every measured single-device and multi-GPU row of
tests/data/decode_measurements.yaml (XiongjieDai GPU benchmarks, llama.cpp benches and PR #4766). Prints the table."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import yaml

from planner.estimate.memory import split_layers
from planner.estimate.performance import StagePlan, estimate_replica_speed
from planner.estimate.speed import calibration_class, estimate_expert_fraction_touched
from planner.estimate.weights import estimate_weight_bytes
from planner.loaders.calibration import find_calibration, load_calibration
from planner.loaders.catalog import load_catalog_model
from planner.loaders.formats import build_precision_mix
from planner.loaders.hardware import find_hardware, load_hardware_catalog
from planner.loaders.links import load_link_catalog

ROWS = yaml.safe_load((Path(__file__).parent / "data" / "decode_measurements.yaml").read_text())["rows"]
PCIE = load_link_catalog()["pcie-4"]


def predict(row: dict, users: int = 1) -> float:
    model = load_catalog_model(row["model"])
    mix = build_precision_mix(row["weights"], "fp16")
    weights = estimate_weight_bytes(model, mix)
    device = find_hardware(row["devices"])
    calibration = find_calibration(device)
    stages = [StagePlan(device, layers, 1, calibration, next_bandwidth_gb_s=PCIE.bandwidth_gb_s,
                        next_latency_us=PCIE.latency_us) for layers in split_layers(model.num_layers, row["count"])]
    return estimate_replica_speed(model, mix, weights, stages, users=users, context=row["context"]).decode_tokens_per_s


def test_decode_accuracy_table() -> None:
    errors = []
    lines = [f"{'device':<22}{'n':>3} {'model':<14}{'weights':<10}{'context':>8}{'measured':>10}{'predicted':>10}{'error':>8}"]
    for row in ROWS:
        predicted = predict(row)
        error = (predicted - row["tokens_per_s"]) / row["tokens_per_s"]
        errors.append(abs(error))
        lines.append(f"{row['devices']:<22}{row['count']:>3} {row['model']:<14}{row['weights']:<10}{row['context']:>8}"
                     f"{row['tokens_per_s']:>10.2f}{predicted:>10.2f}{error:>+8.1%}")
    lines.append(f"median |error| {statistics.median(errors):.1%}, max {max(errors):.1%} over {len(errors)} rows")
    print("\n".join(lines))
    assert len(errors) == 85
    assert statistics.median(errors) <= 0.15
    assert max(errors) <= 0.35


def test_context_growth_slows_decode() -> None:
    base = {"devices": "rtx-4090", "count": 1, "model": "llama-3.1-8b", "weights": "q4_k_m"}
    speeds = [predict({**base, "context": c}) for c in (256, 2048, 4096)]
    assert speeds[0] > speeds[1] > speeds[2]


def test_batching_raises_total_throughput_and_moe_touches_more_experts() -> None:
    row = {"devices": "dgx-spark-gb10", "count": 1, "model": "qwen2.5-7b", "weights": "q8_0", "context": 512}
    one, eight = predict(row, 1), predict(row, 8)
    assert 6 < eight / one <= 8  # llama.cpp measured 195.67 / 29.24 = 6.7x
    moe = load_catalog_model("gpt-oss-120b")
    assert estimate_expert_fraction_touched(moe, 1) == pytest.approx(4 / 128)
    assert estimate_expert_fraction_touched(moe, 32) == pytest.approx(1 - (1 - 4 / 128) ** 32)


def test_every_catalog_device_has_a_calibration() -> None:
    classes = load_calibration()
    for spec in load_hardware_catalog().values():
        assert calibration_class(spec) in classes, spec.id
