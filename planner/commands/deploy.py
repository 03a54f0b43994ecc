"""`plan deploy`: read inputs, build candidates, solve, verify, explain."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from planner.candidates.recipes import build_candidates
from planner.errors import InputError
from planner.explain import explain_binding, explain_changes
from planner.loaders.calibration import load_calibration
from planner.loaders.catalog import load_model
from planner.loaders.formats import build_precision_mix, load_kv_formats, load_weight_formats
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.inventory import load_inventory
from planner.loaders.links import load_link_catalog
from planner.report.plan import to_plan_dict, to_plan_text
from planner.schemas.serving import ServeRequest
from planner.solver.assign import build_plan
from planner.solver.solve import SolveStatus, solve_candidates
from planner.topology import build_topology
from planner.units import GiB
from planner.verify import check_plan

DEFAULT_CONTEXT = 4096


def run_deploy(opts: dict[str, Any]) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str], int]:
    """The plan document, its renderer and the exit code (0 plan, 1 no plan)."""
    start = time.perf_counter()
    cluster = load_inventory(opts["inventory"])
    model = load_model(opts["model_name"])
    context = opts["context"] or min(DEFAULT_CONTEXT, model.max_context)
    if context > model.max_context:
        raise InputError(f"{context:,} tokens exceeds {model.name}'s maximum context of {model.max_context:,}", field="--context")
    mix = build_precision_mix(opts["weights"] or model.dtype, opts["kv_cache"] or model.dtype)
    try:
        request = ServeRequest(
            users=opts["users"], context=context, prompt_tokens=opts["prompt_tokens"], prefill_chunk=opts["prefill_chunk"],
            min_tokens_per_s=opts["min_tokens_per_s"], objective=opts["objective"],
            gpu_memory_utilization=opts["gpu_memory_utilization"], overhead_factor=opts["overhead"],
            **({"runtime_reserve_bytes": int(opts["runtime_reserve_gib"] * GiB)} if opts["runtime_reserve_gib"] is not None else {}),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(first["msg"], field="--" + "-".join(str(p) for p in first["loc"]).replace("_", "-")) from None
    calibrations = load_calibration()
    topology = build_topology(cluster)
    candidates = build_candidates(model, mix, request, cluster, calibrations, topology)
    result = solve_candidates(candidates, time_limit_s=opts["time_limit"])
    summary = {"users": request.users, "context": request.context, "weights": mix.weights.id, "kv_cache": mix.kv_cache_dtype.id,
               "objective": request.objective, "min_tokens_per_s": request.min_tokens_per_s,
               "gpu_memory_utilization": request.gpu_memory_utilization}
    plan = build_plan(candidates, result, wall_s=time.perf_counter() - start, request_summary=summary)
    problems = check_plan(plan, model, mix, request, cluster, calibrations, topology)
    explanation: list[str] = []
    if result.status == SolveStatus.INFEASIBLE:
        explanation = explain_binding(candidates)
        changes = explain_changes(
            model, mix, request, cluster, calibrations, weight_formats=load_weight_formats(),
            kv_formats=load_kv_formats(), hardware=list(load_hardware_catalog().values()), links=load_link_catalog(),
        )
        if changes:
            explanation.append("Smallest changes that would fit (each re-planned):")
            explanation += [f"  - {c}" for c in changes]
    elif result.status == SolveStatus.TIMED_OUT:
        explanation = [f"The time limit ({opts['time_limit']:g} s) came before any plan; this is not a proof that none "
                       f"exists. Try a larger --time-limit."]
    plan = plan.model_copy(update={"verification": problems, "explanation": explanation,
                                   "solver": plan.solver.model_copy(update={"wall_s": round(time.perf_counter() - start, 3)})})
    code = 0 if result.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE) and not problems else 1
    return to_plan_dict(plan), to_plan_text, code
