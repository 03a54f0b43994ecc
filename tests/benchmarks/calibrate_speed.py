"""Fit the speed model's efficiencies per engine class and device class to the `use: fit` rows of
tests/data/speed_measurements.yaml, and print the fit and the residuals of fitted and held-out rows.

Run: python tests/benchmarks/calibrate_speed.py [--write] [--class ENGINE_CLASS/DEVICE_CLASS ...]

Each row is planned once the way a user would check it (tests/speed_cases.py: `plan deploy` with
the measured engine, devices, layout, concurrency and lengths pinned); its replica's stages are
then re-timed under trial efficiencies by the planner's own serving model
(planner/estimate/serving.py), and the fit minimises the mean squared log error of every measured
figure of the group's rows (decode tokens/s per user, output tokens/s, time to first token, prompt
tokens/s), each model's rows weighing alike, by coordinate descent on the logarithms with a golden-section
search per figure.
Figures no row of a group constrains keep the values they have (borrowed or cited); the script
says which. --write puts the fitted figures into planner/catalog/calibration.yaml.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import speed_cases  # noqa: E402

from planner.commands.args import DeployArgs  # noqa: E402
from planner.commands.engine import resolve_engine  # noqa: E402
from planner.estimate.performance import StagePlan  # noqa: E402
from planner.estimate.serving import Workload, estimate_replica_speed  # noqa: E402
from planner.estimate.weights import estimate_weight_bytes  # noqa: E402
from planner.loaders.calibration import load_calibration  # noqa: E402
from planner.loaders.catalog import load_model  # noqa: E402
from planner.loaders.inventory import load_inventory  # noqa: E402
from planner.schemas.speed import SpeedCalibration  # noqa: E402
from planner.topology import build_topology  # noqa: E402

CALIBRATION = ROOT / "planner" / "catalog" / "calibration.yaml"
# What each engine class's rows can tell apart; (name in SpeedCalibration, YAML key, scale to YAML, bounds).
FIGURES = {
    "plain_bandwidth_efficiency": ("plain_bandwidth_efficiency", 1.0, (0.2, 1.0)),
    "quantized_bandwidth_efficiency": ("quantized_bandwidth_efficiency", 1.0, (0.1, 1.0)),
    "kv_bandwidth_efficiency": ("kv_bandwidth_efficiency", 1.0, (0.1, 1.0)),
    "moe_kernel_efficiency": ("moe_kernel_efficiency", 1.0, (0.1, 1.0)),
    "compute_efficiency": ("compute_efficiency", 1.0, (0.05, 1.0)),
    "quantized_compute_efficiency": ("quantized_compute_efficiency", 1.0, (0.02, 1.0)),
    "step_overhead_s": ("step_overhead_ms", 1000.0, (1e-5, 0.05)),
    "layer_overhead_s": ("layer_overhead_us", 1e6, (1e-7, 3e-4)),
    "moe_layer_overhead_s": ("moe_layer_overhead_us", 1e6, (1e-7, 3e-4)),
    "hop_overhead_s": ("hop_overhead_ms", 1000.0, (1e-6, 0.01)),
    "network_hop_overhead_s": ("network_hop_overhead_ms", 1000.0, (1e-6, 0.05)),
    "allreduce_overhead_s": ("allreduce_overhead_us", 1e6, (1e-7, 2e-4)),
    "request_overhead_s": ("request_overhead_ms", 1000.0, (1e-4, 0.5)),
}
QUANTISED = ("gguf", "int4", "int8", "nvfp4", "mxfp4", "mlx")
SWEEPS = 4
GOLDEN_STEPS = 14
MIN_ROWS = 6  # a device class with fewer fitted rows borrows every figure
SMALL_GROUP = 20  # under this many rows a class fits only its bandwidth, step and all-reduce costs
# Figures every class states; the others are written only when fitted or derived (else their defaults
# apply: no extra overhead, the plain kernels' efficiencies).
REQUIRED = ("plain_bandwidth_efficiency", "quantized_bandwidth_efficiency", "compute_efficiency", "step_overhead_s",
            "hop_overhead_s")


@dataclass
class Case:
    """One measured row, planned, ready to be re-timed under other efficiencies."""

    row: dict
    model: object
    mix: object
    weights: object
    stages: list[StagePlan]
    workload: Workload
    scheduling: object
    device_class: str


def build_case(row: dict, calibrations: dict[str, SpeedCalibration]) -> Case | str:
    """Plan the row, then rebuild its replica's stages with their links (as the verifier does)."""
    import tempfile

    plan = speed_cases.plan_row(row)
    if isinstance(plan, str):
        return plan
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "measured.yaml"
        path.write_text(speed_cases.inventory_text(row))
        cluster = load_inventory(path)
        args = speed_cases.deploy_args(row, path)
        engine, mix, _ = resolve_engine(DeployArgs(explicit=frozenset(args), **args), cluster, load_model(row["model"]))
    topology = build_topology(cluster)
    devices = {d.id: d for d in cluster.devices}
    replica = plan["replicas"][0]
    stages = []
    for k, stage in enumerate(replica["stages"]):
        ids = [d["id"] for d in stage["devices"]]
        spec = devices[ids[0]].spec
        tp_route = topology.route(ids[0], ids[1]) if len(ids) > 1 else None
        nxt = topology.route(ids[0], replica["stages"][k + 1]["devices"][0]["id"]) if k + 1 < len(replica["stages"]) else None
        stages.append(StagePlan(spec, range(*stage["layers"]), len(ids), calibrations[spec.calibration_class],
                                tp_route.bandwidth_gb_s if tp_route else 0.0, tp_route.latency_us if tp_route else 0.0,
                                nxt.bandwidth_gb_s if nxt else 0.0, nxt.latency_us if nxt else 0.0,
                                nxt is not None and devices[ids[0]].node != devices[replica["stages"][k + 1]["devices"][0]["id"]].node))
    model = load_model(row["model"])
    workload = Workload(users=row["concurrency"], prompt_tokens=row["prompt_tokens"], output_tokens=row["output_tokens"],
                        batch_tokens=replica["engine"]["batch_tokens"])
    return Case(row, model, mix, estimate_weight_bytes(model, mix), stages, workload, engine.speed,
                stages[0].device.calibration_class)


def predict(case: Case, calibration: SpeedCalibration) -> dict[str, float]:
    """The row's figures under `calibration`."""
    stages = [replace(s, calibration=calibration) for s in case.stages]
    case.weights.derived.pop("stage_steps", None)
    speed = estimate_replica_speed(case.model, case.mix, case.weights, stages, workload=case.workload, scheduling=case.scheduling)
    decode_only = case.row.get("decode_only", False)
    per_user = 1.0 / speed.decode_only_step_s if decode_only else speed.decode_tokens_per_s_per_user
    return {"decode_tokens_per_s_per_user": per_user,
            "output_tokens_per_s": per_user * case.workload.users if decode_only else speed.decode_tokens_per_s,
            "ttft_s": speed.time_to_first_token_s,
            "prefill_tokens_per_s": case.workload.prompt_tokens / speed.prefill_alone_s}


def measured(row: dict) -> dict[str, float]:
    m = row["measured"]
    out = {}
    if "tpot_ms" in m:
        out["decode_tokens_per_s_per_user"] = 1000.0 / m["tpot_ms"]
    elif "decode_tokens_per_s_per_user" in m:
        out["decode_tokens_per_s_per_user"] = m["decode_tokens_per_s_per_user"]
    if "output_tokens_per_s" in m:
        out["output_tokens_per_s"] = m["output_tokens_per_s"]
    if "ttft_ms" in m:
        out["ttft_s"] = m["ttft_ms"] / 1000.0
    if "prefill_tokens_per_s" in m:
        out["prefill_tokens_per_s"] = m["prefill_tokens_per_s"]
    return out


def fitted_figures(case: Case) -> dict[str, float]:
    """The measured figures a fit uses: every one but the time to first token of MoE rows, whose
    published values (DeepSeek-R1 under InferenceX's client) run 5-10x any prefill time and would
    turn the per-request overhead into a constant for one benchmark's client."""
    figures = measured(case.row)
    if case.model.moe is not None:
        figures.pop("ttft_s", None)
    return figures


def log_errors(cases: list[Case], calibration: SpeedCalibration, every: bool = False) -> list[float]:
    errors = []
    for case in cases:
        got = predict(case, calibration)
        figures = measured(case.row) if every else fitted_figures(case)
        errors += [math.log(got[k] / v) for k, v in figures.items()]
    return errors


def loss(cases: list[Case], calibration: SpeedCalibration) -> float:
    """Mean squared log error, each model's rows weighing as much as another's (one benchmark's
    sweep of one model must not decide a class's figures alone)."""
    per_model: dict[str, int] = {}
    for case in cases:
        per_model[case.row["model"]] = per_model.get(case.row["model"], 0) + 1
    total = weight = 0.0
    for case in cases:
        errors = log_errors([case], calibration)
        w = 1.0 / per_model[case.row["model"]]
        total += w * sum(e * e for e in errors)
        weight += w * len(errors)
    return total / max(weight, 1e-12)


def quantised(case: Case) -> bool:
    """The row's weights are block-quantised (GGUF F16 is not)."""
    return case.mix.weights.family in QUANTISED and case.row["weights"] not in ("f16", "bf16", "fp16")


def free_figures(cases: list[Case]) -> list[str]:
    """The figures the group's rows constrain."""
    out = ["plain_bandwidth_efficiency", "step_overhead_s"]
    if len({c.model.num_layers for c in cases}) > 2:
        out.append("layer_overhead_s")
    if any(quantised(c) for c in cases):
        out.append("quantized_bandwidth_efficiency")
    if len({c.workload.decode_context // 2048 for c in cases}) > 2:  # contexts from under 2k to 6k and more
        out.append("kv_bandwidth_efficiency")
    if any(c.model.moe is not None for c in cases):
        out.append("moe_kernel_efficiency")
        if any(c.model.moe is None for c in cases) and "layer_overhead_s" in out:
            out.append("moe_layer_overhead_s")
    prompted = [c for c in cases if {"prefill_tokens_per_s", "ttft_s"} & set(fitted_figures(c))]
    if prompted:
        out.append("compute_efficiency")
    if any(quantised(c) for c in prompted):
        out.append("quantized_compute_efficiency")
    if any("ttft_s" in fitted_figures(c) for c in cases):
        out.append("request_overhead_s")
    if any(s.tensor_parallel_size > 1 for c in cases for s in c.stages):
        out.append("allreduce_overhead_s")
    if any(len(c.stages) > 1 and not any(s.next_machine for s in c.stages) for c in cases):
        out.append("hop_overhead_s")
    if any(s.next_machine for c in cases for s in c.stages):
        out.append("network_hop_overhead_s")
    if len(cases) < SMALL_GROUP:  # few rows: only the main figures, each where at least 3 figures inform it
        decode = [c for c in cases if {"decode_tokens_per_s_per_user", "output_tokens_per_s"} & set(fitted_figures(c))]
        informed = {"plain_bandwidth_efficiency": sum(not quantised(c) for c in decode),
                    "quantized_bandwidth_efficiency": sum(quantised(c) for c in decode),
                    "step_overhead_s": len(decode), "allreduce_overhead_s": len(decode), "compute_efficiency": len(prompted)}
        out = [f for f in out if informed.get(f, 0) >= 3]
    return out


def fit(cases: list[Case], start: SpeedCalibration) -> tuple[SpeedCalibration, list[str]]:
    """Coordinate descent on log figures, golden-section per figure, within FIGURES' bounds."""
    figures = free_figures(cases)
    current = replace(start, quantized_compute_efficiency=figure(start, "quantized_compute_efficiency"),
                      kv_bandwidth_efficiency=figure(start, "kv_bandwidth_efficiency"))
    for _ in range(SWEEPS):
        for name in figures:
            low, high = (math.log(b) for b in FIGURES[name][2])
            phi = (math.sqrt(5) - 1) / 2

            def at(x: float) -> float:
                return loss(cases, replace(current, **{name: math.exp(x)}))

            a, b = low, high
            c, d = b - phi * (b - a), a + phi * (b - a)
            fc, fd = at(c), at(d)
            for _ in range(GOLDEN_STEPS):
                if fc < fd:
                    b, d, fd = d, c, fc
                    c = b - phi * (b - a)
                    fc = at(c)
                else:
                    a, c, fc = c, d, fd
                    d = a + phi * (b - a)
                    fd = at(d)
            best = (a + b) / 2
            candidate = replace(current, **{name: math.exp(best)})
            if loss(cases, candidate) <= loss(cases, current):
                current = candidate
    return current, figures


def figure(calibration: SpeedCalibration, name: str) -> float:
    """A figure's value (the quantised products' and the KV reads' efficiencies default to the plain ones)."""
    value = getattr(calibration, name)
    if value is None:
        return calibration.plain_bandwidth_efficiency if name == "kv_bandwidth_efficiency" else calibration.compute_efficiency
    return value


def describe(errors: list[float]) -> str:
    rel = [abs(math.exp(e) - 1) for e in errors]
    if not rel:
        return "no figures"
    return (f"{len(rel)} figures, median |error| {statistics.median(rel):.1%}, within 20% {sum(r <= 0.2 for r in rel) / len(rel):.0%}, "
            f"within 35% {sum(r <= 0.35 for r in rel) / len(rel):.0%}")


def write_yaml(fits: dict[tuple[str, str], tuple]) -> None:
    """Each fitted class's line: every figure, or for a class that borrows, the borrowing and the
    figures its own rows fitted."""
    text = CALIBRATION.read_text()
    for (engine, device_class), (calibration, figures, rows, derived) in sorted(fits.items()):
        pattern = re.compile(rf"(^  {re.escape(engine)}:\n(?:    .*\n)*?)      {re.escape(device_class)}: (.*)$", re.M)
        found = pattern.search(text)
        if not found:
            raise SystemExit(f"calibration.yaml has no line for {engine}/{device_class}")
        borrow = re.search(r"borrow: ([^,}]+)", found.group(2))
        names = [*figures, *derived] if borrow else [n for n in FIGURES if n in REQUIRED or n in figures or n in derived]
        values = {FIGURES[n][0]: round(figure(calibration, n) * FIGURES[n][1], 4) for n in names}
        body = ", ".join(([f"borrow: {borrow.group(1)}"] if borrow else []) + [f"{k}: {v:g}" for k, v in values.items()])
        line = (f"      {device_class}: {{{body}, rows: {rows}, fitted: [{', '.join(FIGURES[n][0] for n in figures)}]"
                + (f", derived: [{', '.join(FIGURES[n][0] for n in derived)}]" if derived else "") + "}")
        text = text[:found.start()] + found.group(1) + line + text[found.end():]
    CALIBRATION.write_text(text)


def fill_unmeasured(fits: dict[tuple[str, str], tuple]) -> None:
    """Figures no row of a class measures, derived from ones that are: a pipeline hop inside a
    machine is one send/receive of the engine's collective library, so it costs what its
    all-reduce call does when only that was fitted; a hop between machines costs what the engine
    class's network transport was measured to cost on any device class (it is the transport's, not
    the device's), else an in-machine hop."""
    network = {engine: max(c.network_hop_overhead_s for c in load_calibration(engine).values()) for engine, _ in fits}
    network.update({engine: c.network_hop_overhead_s for (engine, _), (c, figures, *_) in fits.items()
                    if "network_hop_overhead_s" in figures})
    for key, (calibration, figures, rows) in list(fits.items()):
        engine = key[0]
        derived = []
        if "hop_overhead_s" not in figures and "allreduce_overhead_s" in figures:
            calibration = replace(calibration, hop_overhead_s=calibration.allreduce_overhead_s)
            derived.append("hop_overhead_s")
        if "network_hop_overhead_s" not in figures:
            calibration = replace(calibration, network_hop_overhead_s=network.get(engine, calibration.hop_overhead_s))
            derived.append("network_hop_overhead_s")
        fits[key] = (calibration, figures, rows, derived)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the fitted figures into planner/catalog/calibration.yaml")
    parser.add_argument("--class", dest="only", action="append", default=[], help="ENGINE_CLASS/DEVICE_CLASS to fit (default: all)")
    options = parser.parse_args()
    groups: dict[tuple[str, str], dict[str, list[Case]]] = {}
    unplanned = []
    for row in speed_cases.ROWS:
        engine_class = speed_cases.engine_class(row)
        calibrations = load_calibration(engine_class)
        case = build_case(row, calibrations)
        if isinstance(case, str):
            unplanned.append((row["id"], case))
            continue
        groups.setdefault((engine_class, case.device_class), {"fit": [], "holdout": []})[row["use"]].append(case)
    fits = {}
    print(f"{'engine class/device class':<34}{'rows fit/held':>14}  fitted figures")
    for key, split in sorted(groups.items()):
        if options.only and f"{key[0]}/{key[1]}" not in options.only:
            continue
        start = split["fit"][0].stages[0].calibration if split["fit"] else split["holdout"][0].stages[0].calibration
        if len(split["fit"]) < MIN_ROWS:
            print(f"{key[0] + '/' + key[1]:<34}{len(split['fit']):>6}/{len(split['holdout']):<7}  too few rows to fit: "
                  f"keeps its figures")
            calibration, figures = start, []
        else:
            calibration, figures = fit(split["fit"], start)
            fits[key] = (calibration, figures, len(split["fit"]))
        shown = {FIGURES[n][0]: round(figure(calibration, n) * FIGURES[n][1], 4) for n in FIGURES}
        print(f"{key[0] + '/' + key[1]:<34}{len(split['fit']):>6}/{len(split['holdout']):<7}  {', '.join(figures) or '-'}")
        print(f"    {shown}")
        print(f"    fit:      {describe(log_errors(split['fit'], calibration, every=True))}")
        print(f"    held out: {describe(log_errors(split['holdout'], calibration, every=True))}")
    print("\n| engine class | device class | figure | fitted rows: n, median, within 35% | held-out rows: n, median, within 35% |")
    print("|---|---|---|---|---|")
    for key, split in sorted(groups.items()):
        calibration = fits.get(key, (None,))[0] or (split["fit"] or split["holdout"])[0].stages[0].calibration
        by_metric: dict[str, dict[str, list[float]]] = {}
        for use in ("fit", "holdout"):
            for case in split[use]:
                got = predict(case, calibration)
                for metric, value in measured(case.row).items():
                    by_metric.setdefault(metric, {"fit": [], "holdout": []})[use].append(abs(got[metric] / value - 1))
        for metric, uses in sorted(by_metric.items()):
            cells = []
            for use in ("fit", "holdout"):
                e = uses[use]
                cells.append(f"{len(e)}, {statistics.median(e):.1%}, {sum(x <= 0.35 for x in e) / len(e):.0%}" if e else "-")
            print(f"| {key[0]} | {key[1]} | {metric} | {cells[0]} | {cells[1]} |")
    print("\nresiduals (measured vs predicted, signed error):")
    for key, split in sorted(groups.items()):
        calibration = fits.get(key, (None,))[0] or (split["fit"] or split["holdout"])[0].stages[0].calibration
        for use in ("fit", "holdout"):
            for case in split[use]:
                got = predict(case, calibration)
                for metric, value in measured(case.row).items():
                    print(f"  {key[0]:<10} {key[1]:<13} {use:<7} {case.row['id'][:58]:<58} {metric:<28} "
                          f"{value:>10.4g} {got[metric]:>10.4g} {got[metric] / value - 1:>+7.1%}")
    if unplanned:
        print(f"\n{len(unplanned)} rows have no plan:")
        for row_id, why in unplanned:
            print(f"  {row_id}: {why[:140]}")
    fill_unmeasured(fits)
    if options.write:
        write_yaml(fits)
        print(f"\nwrote {len(fits)} classes into {CALIBRATION.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
