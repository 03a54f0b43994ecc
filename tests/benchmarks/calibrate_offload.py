"""Fit the host-cpu class of planner/catalog/calibration.yaml (llama.cpp) to the `use: fit` rows
of tests/data/offload_measurements.yaml: one bandwidth efficiency for what the CPU reads (block-
quantised weights, 16-bit tensors and the KV cache alike) and one cost per layer handed to the
CPU (the copies and synchronisation between the GPU and the CPU backends). A grid over both,
minimising the mean squared log(predicted / measured); prints the fit and every row, held-out rows
apart. Run: python tests/benchmarks/calibrate_offload.py"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from planner.estimate.host import HOST_CLASS  # noqa: E402
from planner.loaders.calibration import load_calibrations  # noqa: E402
from tests.offload_cases import ROWS, compare_row  # noqa: E402


def set_host(efficiency: float, layer_us: float) -> None:
    table = load_calibrations()["llama.cpp"]
    table[HOST_CLASS] = replace(table[HOST_CLASS], plain_bandwidth_efficiency=efficiency,
                                quantized_bandwidth_efficiency=efficiency, layer_overhead_s=layer_us * 1e-6)


def score(rows: list[dict]) -> float:
    errors = []
    for row in rows:
        found = compare_row(row)
        if isinstance(found, str):
            return math.inf
        errors += [math.log(c.predicted / c.measured) ** 2 for c in found]
    return statistics.fmean(errors)


def main() -> None:
    fit = [r for r in ROWS if r["use"] == "fit"]
    best = min(((score_of, e, o) for e in [x / 100 for x in range(30, 96, 5)] for o in (0, 100, 200, 300, 400, 500, 600, 800, 1000, 1200)
                for score_of in [(set_host(e, o), score(fit))[1]]), key=lambda t: (t[0], t[1], t[2]))
    _, efficiency, layer_us = best
    set_host(efficiency, layer_us)
    print(f"host-cpu: bandwidth efficiency {efficiency:.2f}, layer overhead {layer_us:g} us ({len(fit)} fit rows)\n")
    print(f"{'row':<52} {'use':<8} {'measured':>9} {'planned':>9} {'error':>7}")
    for row in ROWS:
        for c in compare_row(row):
            print(f"{row['id']:<52} {row['use']:<8} {c.measured:>9.2f} {c.predicted:>9.2f} {c.error:>+7.0%}")


if __name__ == "__main__":
    main()
