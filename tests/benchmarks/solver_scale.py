"""Wall time of `plan deploy` against inventory size: mixed clusters of eight-GPU machines of
four kinds (a quarter each), Llama-3.1-405B in FP8 (q8_0 for llama.cpp) for half as many users
as GPUs, for each serving engine that runs on them; then clusters of many distinct device types.
Prints a table.

Run: python tests/benchmarks/solver_scale.py [--engines vllm,sglang,llama.cpp] [--types N] [sizes...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from planner.commands.args import DeployArgs  # noqa: E402
from planner.commands.deploy import run_deploy  # noqa: E402
from planner.errors import InputError  # noqa: E402
from planner.loaders.hardware import load_hardware_catalog  # noqa: E402

MIX = [("h100-sxm", "nvswitch"), ("a100-sxm-80gb", "nvswitch"), ("h200", "nvswitch"), ("l40s", "pcie-4")]


def inventory(devices: int, kinds: list[tuple[str, str]]) -> dict:
    """`devices` GPUs in eight-GPU machines, an equal share of each kind."""
    machines = max(1, devices // 8)
    nodes = []
    for k, (device, link) in enumerate(kinds):
        count = machines // len(kinds) + (1 if k < machines % len(kinds) else 0)
        if count:
            nodes.append({"name": f"m{k}", "count": count, "interconnect": link, "devices": [{"type": device, "count": 8}]})
    return {"name": f"mixed-{devices}", "nodes": nodes, "network": {"default": "infiniband-ndr", "rails": 4}}


def many_kinds(n: int) -> list[tuple[str, str]]:
    """n distinct GPU types from the catalog (8-GPU machines of each)."""
    gpus = [s.id for s in load_hardware_catalog().values() if s.kind == "gpu" and s.memory_gib >= 16]
    return [(gpus[i % len(gpus)], "pcie-4") for i in range(n)]


def run(size: int, kinds: list[tuple[str, str]], engine: str, model: str, tmp: Path, time_limit: float) -> str:
    path = tmp / f"inv-{size}-{len(kinds)}.yaml"
    data = inventory(size, kinds)
    if len({k for k, _ in kinds}) < len(kinds):  # repeated catalog ids: make the machines distinct by their memory use
        for i, node in enumerate(data["nodes"]):
            node["devices"][0]["used_gb"] = round(0.1 * i, 1)
    path.write_text(yaml.safe_dump(data))
    users = max(4, size // 2)
    weights = "q8_0" if engine == "llama.cpp" else "fp8"  # llama.cpp runs GGUF types
    args = DeployArgs(inventory=str(path), model=model, engine=engine, users=users, context=8192, weights=weights,
                      time_limit=time_limit)
    start = time.perf_counter()
    try:
        result = run_deploy(args)
    except InputError as exc:  # an engine that cannot run here
        return f"{size:>7} {len(kinds):>5} {engine:<10} {users:>6}  {type(exc).__name__}: {str(exc)[:60]}"
    total = time.perf_counter() - start
    plan, t = result.plan, result.timings
    tokens = plan.performance.decode_tokens_per_s_total if plan.performance else 0.0
    gap = plan.solver.gap
    return (f"{len(plan.unused_devices) + sum(len(d.devices) for r in plan.replicas for d in r.stages):>7} {len(kinds):>5} "
            f"{engine:<10} {users:>6} {plan.solver.candidates:>8} {t['candidates_s']:>8.2f} {t['solver_s']:>7.2f} {total:>7.2f} "
            f"{plan.solver.status.value:>9} {'' if gap is None else f'{gap:.2%}':>7} "
            f"{'yes' if plan.solver.stopped_early else 'no':>5} {tokens:>10,.0f} {'yes' if not plan.verification else 'NO':>8}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", type=int, default=[64, 512, 4096, 16384])
    parser.add_argument("--engines", default="vllm,sglang,llama.cpp")
    parser.add_argument("--types", type=int, default=0, help="also run with this many distinct device types")
    parser.add_argument("--model", default="llama-3.1-405b")
    parser.add_argument("--time-limit", type=float, default=120.0)
    options = parser.parse_args()
    print(f"{'devices':>7} {'kinds':>5} {'engine':<10} {'users':>6} {'layouts':>8} {'build s':>8} {'solve s':>7} {'total s':>7} "
          f"{'status':>9} {'gap':>7} {'cut':>5} {'tokens/s':>10} {'verified':>8}")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for engine in options.engines.split(","):
            for size in options.sizes:
                print(run(size, MIX, engine, options.model, tmp, options.time_limit), flush=True)
        if options.types:
            for size in options.sizes:
                print(run(size, many_kinds(options.types), "vllm", options.model, tmp, options.time_limit), flush=True)


if __name__ == "__main__":
    main()
