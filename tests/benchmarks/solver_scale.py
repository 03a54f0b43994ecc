"""Solve time and status of `plan deploy` against inventory size, on mixed clusters of four device
types. Prints a table. Run: python tests/benchmarks/solver_scale.py [sizes...]"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from planner.candidates.recipes import build_candidates  # noqa: E402
from planner.loaders.calibration import load_calibration  # noqa: E402
from planner.loaders.catalog import load_catalog_model  # noqa: E402
from planner.loaders.formats import build_precision_mix  # noqa: E402
from planner.loaders.inventory import build_cluster  # noqa: E402
from planner.loaders.yamlfile import parse_yaml_text  # noqa: E402
from planner.assign.identity import build_inventory_ref, build_model_ref, build_precision_out  # noqa: E402
from planner.assign.serve import build_serve_plan  # noqa: E402
from planner.schemas.plan import ServePlanRequest  # noqa: E402
from planner.solver.solve import solve_candidates  # noqa: E402
from planner.topology import build_topology  # noqa: E402
from planner.verify import check_serve_plan  # noqa: E402

# (device type, devices per node, interconnect): a quarter of the devices each.
MIX = [("h100-sxm", 8, "nvswitch"), ("a100-sxm-80gb", 8, "nvswitch"), ("l40s", 4, "pcie-4"), ("rtx-4090", 2, "pcie-4")]


def inventory(devices: int) -> dict:
    nodes = []
    per_type = max(1, devices // len(MIX))
    for device, per_node, link in MIX:
        per_node = min(per_node, per_type)
        count = max(1, per_type // per_node)
        nodes.append({"name": device, "count": count, "interconnect": link, "devices": [{"type": device, "count": per_node}]})
    return {"name": f"mixed-{devices}", "nodes": nodes, "network": {"default": "infiniband-ndr", "rails": 4}}


def main() -> None:
    sizes = [int(s) for s in sys.argv[1:]] or [8, 64, 256, 1024, 4096]
    model = load_catalog_model("llama-3.1-70b")
    mix = build_precision_mix("fp8", "fp8")
    calibrations = load_calibration()
    print(f"{'devices':>8} {'users':>6} {'layouts':>8} {'candidates s':>13} {'solve s':>8} {'total s':>8} {'status':>9} "
          f"{'gap':>7} {'tokens/s':>10} {'verified':>9}")
    for size in sizes:
        cluster = build_cluster(parse_yaml_text(yaml.safe_dump(inventory(size)), f"mixed-{size}.yaml"))
        users = max(4, len(cluster.devices) // 2)
        request = ServePlanRequest(model=build_model_ref(model), precision=build_precision_out(mix), users=users, context=8192)
        start = time.perf_counter()
        topology = build_topology(cluster)
        candidates = build_candidates(model, mix, request, cluster, calibrations, topology)
        middle = time.perf_counter()
        result = solve_candidates(candidates, time_limit_s=60)
        end = time.perf_counter()
        plan = build_serve_plan(candidates, result, request=request, inventory=build_inventory_ref(cluster))
        problems = check_serve_plan(plan, model, mix, cluster, calibrations, topology)
        gap = plan.solver.gap
        total = plan.performance.decode_tokens_per_s_total if plan.performance else 0.0
        print(f"{len(cluster.devices):>8} {users:>6} {len(candidates.recipes):>8} {middle - start:>13.2f} {end - middle:>8.2f} "
              f"{end - start:>8.2f} {result.status.value:>9} {'' if gap is None else f'{gap:.2%}':>7} {total:>10,.0f} "
              f"{'yes' if not problems else 'NO':>9}")


if __name__ == "__main__":
    main()
