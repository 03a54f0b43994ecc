"""`plan deploy`: read inputs, build candidates, solve, verify, explain."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from planner.candidates.recipes import build_candidates
from planner.candidates.training import TrainRequest, build_training_candidates
from planner.commands.memory import check_weights_choice, to_input_error
from planner.errors import InputError
from planner.explain import explain_binding, explain_changes
from planner.loaders.calibration import load_calibration
from planner.loaders.catalog import load_model
from planner.loaders.formats import build_precision_mix, load_kv_formats, load_weight_formats
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.inventory import load_inventory
from planner.loaders.links import load_link_catalog
from planner.report.plan import to_plan_dict, to_plan_text
from planner.schemas.serving import DEFAULT_RUNTIME_RESERVE_BYTES, ServeRequest
from planner.schemas.workload import LoRASpec, TrainWorkload
from planner.solver.assign import build_plan
from planner.solver.assign_training import build_training_plan
from planner.solver.solve import SolveStatus, solve_candidates
from planner.solver.training import solve_training
from planner.topology import build_topology
from planner.units import GiB
from planner.verify import check_plan, check_training_plan

DEFAULT_CONTEXT = 4096


def run_deploy(opts: dict[str, Any]) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str], int]:
    """The plan document, its renderer and the exit code (0 plan, 1 no plan)."""
    start = time.perf_counter()
    cluster = load_inventory(opts["inventory"])
    model = load_model(opts["model_name"])
    if opts["mode"] == "train":
        return _run_train(opts, cluster, model, start)
    context = opts["context"] or min(DEFAULT_CONTEXT, model.max_context)
    if context > model.max_context:
        raise InputError(f"{context:,} tokens exceeds {model.name}'s maximum context of {model.max_context:,}", field="--context")
    weights = opts["weights"] or ("checkpoint" if model.checkpoint else model.dtype)
    check_weights_choice(weights, model)
    mix = build_precision_mix(weights, opts["kv_cache"] or model.dtype)
    if opts["prompt_tokens"] and opts["prompt_tokens"] > context:
        raise InputError(f"a {opts['prompt_tokens']:,}-token prompt does not fit a {context:,}-token context", field="--prompt-tokens")
    try:
        request = ServeRequest(
            users=opts["users"], context=context, prompt_tokens=opts["prompt_tokens"], prefill_chunk=opts["prefill_chunk"],
            min_tokens_per_s=opts["min_tokens_per_s"], objective=opts["objective"],
            gpu_memory_utilization=opts["gpu_memory_utilization"], overhead_factor=opts["overhead"],
            **({"runtime_reserve_bytes": int(opts["runtime_reserve_gib"] * GiB)} if opts["runtime_reserve_gib"] is not None else {}),
        )
    except ValidationError as exc:
        raise to_input_error(exc) from None
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


def _run_train(opts: dict[str, Any], cluster, model, start: float) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str], int]:
    """Training: choose tp x pp x dp, ZeRO stage, offload and recomputation together."""
    sequence = opts["sequence_length"] or opts["context"] or min(DEFAULT_CONTEXT, model.max_context)
    if opts["global_batch_size"] % opts["micro_batch_size"]:
        raise InputError(f"global batch {opts['global_batch_size']} is not a multiple of micro-batch {opts['micro_batch_size']}",
                         field="--global-batch-size")
    if sequence > model.max_context:
        raise InputError(f"{sequence:,} tokens exceeds {model.name}'s maximum context of {model.max_context:,}", field="--sequence-length")
    lora = LoRASpec(rank=opts["lora_rank"] or 16) if (opts["lora_rank"] or opts["qlora"]) else None
    weights = opts["weights"] or ("nf4" if opts["qlora"] else ("checkpoint" if model.checkpoint else model.dtype))
    check_weights_choice(weights, model)
    mix = build_precision_mix(weights, opts["kv_cache"] or model.dtype)
    reserve = int(opts["runtime_reserve_gib"] * GiB) if opts["runtime_reserve_gib"] is not None else DEFAULT_RUNTIME_RESERVE_BYTES
    zero = None if opts["zero_stage"] == "auto" else int(opts["zero_stage"])
    request = TrainRequest(
        global_batch_size=opts["global_batch_size"], micro_batch_size=opts["micro_batch_size"], sequence_length=sequence,
        optimizer=opts["optimizer"], recompute=opts["recompute"], zero_stage=zero, offload=opts["offload"], lora=lora,
        runtime_reserve_bytes=reserve, overhead_factor=opts["overhead"],
    )
    calibrations = load_calibration()
    topology = build_topology(cluster)
    candidates = build_training_candidates(model, mix, request, cluster, calibrations, topology)
    choice = solve_training(candidates, time_limit_s=opts["time_limit"])
    summary = {"mode": "train", "global_batch_size": request.global_batch_size, "micro_batch_size": request.micro_batch_size,
               "sequence_length": sequence, "optimizer": request.optimizer, "weights": mix.weights.id,
               "lora_rank": lora.rank if lora else None}
    plan = build_training_plan(candidates, choice, cluster, model_name=model.name, request_summary=summary,
                               wall_s=time.perf_counter() - start)
    problems: list[str] = []
    explanation: list[str] = []
    if choice.index is not None:
        layout = candidates.layouts[choice.index]
        workload = TrainWorkload(
            micro_batch_size=request.micro_batch_size, sequence_length=sequence, optimizer=request.optimizer,
            recompute=layout.recompute, sequence_parallel=layout.tp > 1, zero_stage=layout.zero_stage,
            offload_optimizer=layout.offload != "none", offload_params=layout.offload == "optimizer+params", lora=lora,
            overhead_factor=request.overhead_factor, runtime_reserve_bytes=reserve,
        )
        problems = check_training_plan(plan, model, mix, workload, cluster, global_batch_size=request.global_batch_size)
    else:
        seen: list[str] = []
        for reason in candidates.rejections:
            if reason not in seen:
                seen.append(reason)
        explanation = [f"No training layout fits: {len(candidates.rejections)} were rejected, for example:"]
        explanation += [f"  - {r}" for r in seen[:4]]
        explanation.append("Try --qlora or --lora-rank, a smaller --micro-batch-size or --sequence-length, "
                           "--recompute full, or more devices.")
    plan = plan.model_copy(update={"verification": problems, "explanation": explanation,
                                   "solver": plan.solver.model_copy(update={"wall_s": round(time.perf_counter() - start, 3)})})
    code = 0 if choice.index is not None and not problems else 1
    return to_plan_dict(plan), to_plan_text, code
