"""Fit the speed model's efficiencies per device class to the measured decode rows, and print
the fit and every row's predicted vs measured speed.

Run: python tests/benchmarks/calibrate_speed.py
The model per device class: t = overhead + a x (16-bit bytes + KV bytes) / BW + b x (quantised
bytes) / BW + hop x (stages - 1), linear in (overhead, a, b, hop); the fit minimises the squared
relative error. Efficiencies are 1/a and 1/b. Paste the printed YAML into
planner/catalog/calibration.yaml.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from planner.estimate.shards import split_layers  # noqa: E402
from planner.estimate.speed import calibration_class, estimate_decode_stage_time  # noqa: E402
from planner.schemas.speed import SpeedCalibration  # noqa: E402
from planner.estimate.weights import estimate_weight_bytes  # noqa: E402
from planner.loaders.catalog import load_catalog_model  # noqa: E402
from planner.loaders.formats import build_precision_mix  # noqa: E402
from planner.loaders.hardware import find_hardware  # noqa: E402

UNIT = SpeedCalibration(1.0, 1.0, 1.0, 0.0, 0.0)


def features(row: dict) -> tuple[str, list[float]]:
    """(class, [1, plain_s, quant_s, hops]) for one measured row, at efficiency 1."""
    model = load_catalog_model(row["model"])
    mix = build_precision_mix(row["weights"], "fp16")
    weights = estimate_weight_bytes(model, mix)
    device = find_hardware(row["devices"])
    stages = split_layers(model.num_layers, row["count"])
    plain = quant = 0.0
    for i, layers in enumerate(stages):
        t = estimate_decode_stage_time(model, mix, weights, device, UNIT, layers=layers, first=i == 0,
                                       last=i == len(stages) - 1, context=row["context"])
        bandwidth = device.memory_bandwidth_gb_s * 1e9
        quant_bytes = t.weight_bytes - _plain_weight_bytes(weights, model, layers, i == len(stages) - 1)
        plain += (t.weight_bytes - quant_bytes + t.kv_bytes) / bandwidth
        quant += quant_bytes / bandwidth
    return calibration_class(device), [1.0, plain, quant, float(len(stages) - 1)]


def _plain_weight_bytes(weights, model, layers, last) -> float:
    total = 0.0
    for item in weights.tensors:
        tensor = item.tensor
        on_stage = tensor.layer in layers if tensor.layer is not None else (
            last and (tensor.kind != "token_embd" or model.tie_word_embeddings))
        if on_stage and item.bits_per_weight >= 16:
            total += item.bytes * (estimate_fraction(model, tensor))
    return total


def estimate_fraction(model, tensor) -> float:
    from planner.estimate.speed import estimate_expert_fraction_touched

    return estimate_expert_fraction_touched(model, 1) if tensor.component == "experts" else 1.0


def solve(rows: list[tuple[list[float], float]], fixed_hop: float | None) -> list[float]:
    """Weighted least squares on relative error: minimise sum ((x.f - y) / y)^2 (Gaussian elimination)."""
    n = 4 if fixed_hop is None else 3
    a = [[0.0] * n for _ in range(n)]
    b = [0.0] * n
    for f, y in rows:
        f2 = f[:n]
        target = y - (fixed_hop * f[3] if fixed_hop is not None else 0.0)
        for i in range(n):
            b[i] += f2[i] * target / y**2
            for j in range(n):
                a[i][j] += f2[i] * f2[j] / y**2
    for i in range(n):  # ridge on empty directions (no multi-device rows, no 16-bit rows)
        a[i][i] += 1e-12
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        b[col], b[pivot] = b[pivot], b[col]
        for r in range(n):
            if r != col and a[col][col]:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col])]
                b[r] -= factor * b[col]
    x = [b[i] / a[i][i] if a[i][i] else 0.0 for i in range(n)]
    return x + ([fixed_hop] if fixed_hop is not None else [])


def main() -> None:
    data = yaml.safe_load((ROOT / "tests" / "data" / "decode_measurements.yaml").read_text())
    by_class: dict[str, list] = {}
    for row in data["rows"]:
        cls, f = features(row)
        by_class.setdefault(cls, []).append((row, f))
    print("classes:")
    fits = {}
    for cls, items in sorted(by_class.items()):
        multi = any(r["count"] > 1 for r, _ in items)
        x = solve([(f, 1.0 / r["tokens_per_s"]) for r, f in items], None if multi else 0.0)
        overhead, a, b, hop = x
        fits[cls] = (overhead, a, b, hop)
        print(f"  {cls}:")
        print(f"    plain_bandwidth_efficiency: {1 / a:.3f}")
        print(f"    quantized_bandwidth_efficiency: {1 / b:.3f}" if b > 0 else "    quantized_bandwidth_efficiency: n/a")
        print(f"    step_overhead_ms: {overhead * 1000:.3f}")
        print(f"    hop_overhead_ms: {hop * 1000:.3f}")
        print(f"    rows: {len(items)}")
    errors = []
    print(f"\n{'device':<22}{'n':>3} {'model':<14}{'weights':<10}{'context':>8}{'measured':>10}{'predicted':>10}{'error':>8}")
    for cls, items in sorted(by_class.items()):
        overhead, a, b, hop = fits[cls]
        for row, f in items:
            t = overhead + a * f[1] + b * f[2] + hop * f[3]
            pred = 1 / t
            err = (pred - row["tokens_per_s"]) / row["tokens_per_s"]
            errors.append(abs(err))
            print(f"{row['devices']:<22}{row['count']:>3} {row['model']:<14}{row['weights']:<10}{row['context']:>8}"
                  f"{row['tokens_per_s']:>10.2f}{pred:>10.2f}{err:>+8.1%}")
    print(f"\nmedian |error| {statistics.median(errors):.1%}, max {max(errors):.1%}, rows {len(errors)}")


if __name__ == "__main__":
    main()
