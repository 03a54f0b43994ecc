"""Turn the chosen recipe copies into concrete devices and a PlanOut (no solver calls here)."""

from __future__ import annotations

from planner.candidates.recipes import CandidateSet
from planner.estimate.engine import estimate_engine_budget_bytes
from planner.estimate.memory import estimate_stage_memory
from planner.estimate.weights import estimate_weight_bytes
from planner.schemas.plan import (
    CapacityOut,
    DeviceMemoryOut,
    DeviceOut,
    PerformanceOut,
    PlanOut,
    ReplicaOut,
    SolverOut,
    StageOut,
)
from planner.solver.solve import SolveResult, SolveStatus


def assign_devices(candidates: CandidateSet, copies: dict[int, int]) -> list[tuple[int, list[list[str]]]]:
    """For each replica (recipe index, device ids per stage). Larger tensor-parallel groups are
    placed first (so identical machines pack exactly), each in the machine with the fewest free
    devices that still fits it, preferring the machine the replica already uses."""
    free: dict[int, list[list[str]]] = {c.index: [list(ids) for ids in c.device_ids] for c in candidates.classes}
    replicas: list[tuple[int, list[list[str] | None]]] = []
    requests = []
    for index in sorted(copies):
        recipe = candidates.recipes[index]
        for _ in range(copies[index]):
            r = len(replicas)
            replicas.append((index, [None] * len(recipe.stages)))
            for k, stage in enumerate(recipe.stages):
                requests.append((-stage.unit.tp, r, k, stage.unit.device_class.index, stage.unit.tp))
    used_nodes: dict[int, set[int]] = {}
    for _, r, k, cls, tp in sorted(requests):
        nodes = free[cls]
        fits = [n for n, ids in enumerate(nodes) if len(ids) >= tp]
        if not fits:
            raise RuntimeError(f"device class {cls} ran out of devices while assigning replica {r}")
        preferred = [n for n in fits if n in used_nodes.get(r, set())]
        choice = min(preferred or fits, key=lambda n: (len(nodes[n]), n))
        replicas[r][1][k] = nodes[choice][:tp]
        del nodes[choice][:tp]
        used_nodes.setdefault(r, set()).add(choice)
    return [(index, [ids for ids in stages if ids is not None]) for index, stages in replicas]


def build_plan(candidates: CandidateSet, result: SolveResult, *, wall_s: float, request_summary: dict) -> PlanOut:
    """The plan document for a solve result (empty replicas when there is no plan)."""
    solver = SolverOut(
        status=result.status.value, wall_s=round(wall_s, 3), objective_name=result.objective_name,
        objective=_round(result.objective), bound=_round(result.bound),
        gap=_gap(result), candidates=len(candidates.recipes), rejected=len(candidates.rejections),
    )
    base = dict(model=candidates.model.name, inventory=candidates.cluster.name, request=request_summary, solver=solver)
    if result.status not in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        all_ids = [d.id for d in candidates.cluster.devices]
        return PlanOut(status=result.status.value, replicas=[], performance=None, capacity=None,
                       unused_devices=all_ids, verification=[], **base)
    devices = {d.id: d for d in candidates.cluster.devices}
    request = candidates.request
    weights = estimate_weight_bytes(candidates.model, candidates.mix)
    replicas: list[ReplicaOut] = []
    used: set[str] = set()
    for r, (index, stage_ids) in enumerate(assign_devices(candidates, result.copies)):
        recipe = candidates.recipes[index]
        stages = []
        last = len(recipe.stages) - 1
        for k, (stage, ids) in enumerate(zip(recipe.stages, stage_ids)):
            layers = range(stage.first_layer, stage.last_layer_exclusive)
            memory = estimate_stage_memory(
                candidates.model, candidates.mix, weights, stage=k, layers=layers, first=k == 0, last=k == last,
                tensor_parallel_size=stage.unit.tp, users=recipe.users, context=request.context,
                prefill_chunk=request.prefill_chunk, overhead_factor=request.overhead_factor,
                runtime_reserve_bytes=request.runtime_reserve_bytes,
            )
            outs = []
            for device_id in ids:
                used.add(device_id)
                device = devices[device_id]
                capacity = estimate_engine_budget_bytes(device, request) + request.runtime_reserve_bytes
                outs.append(DeviceOut(id=device_id, node=device.node, type=device.spec.id, memory=DeviceMemoryOut(
                    weights_bytes=round(memory.weights_bytes), kv_cache_bytes=round(memory.kv_cache_bytes),
                    activations_bytes=round(memory.activations_bytes), overhead_bytes=round(memory.overhead_bytes),
                    total_bytes=round(memory.weights_bytes) + round(memory.kv_cache_bytes)
                    + round(memory.activations_bytes) + round(memory.overhead_bytes),
                    capacity_bytes=round(capacity),
                )))
            stages.append(StageOut(
                index=k, layers=(stage.first_layer, stage.last_layer_exclusive), tensor_parallel_size=stage.unit.tp,
                holds_embedding=k == 0, holds_lm_head=k == last,
                decode_step_s=round(recipe.speed.stage_seconds[k], 6), devices=outs,
            ))
        replicas.append(ReplicaOut(
            index=r, users=recipe.users,
            decode_tokens_per_s_per_user=round(recipe.speed.decode_tokens_per_s_per_user, 3),
            time_to_first_token_s=round(recipe.speed.time_to_first_token_s, 4),
            kv_cache_tokens=recipe.kv_capacity_tokens, stages=stages,
        ))
    chosen = [candidates.recipes[i] for i in sorted(result.copies) for _ in range(result.copies[i])]
    slowest = min(range(len(chosen)), key=lambda i: (chosen[i].speed.decode_tokens_per_s_per_user, i))
    worst = chosen[slowest]
    performance = PerformanceOut(
        decode_tokens_per_s_per_user=round(worst.speed.decode_tokens_per_s_per_user, 3),
        decode_tokens_per_s_total=round(sum(r.tokens_per_s for r in chosen), 3),
        time_to_first_token_s=round(max(r.speed.time_to_first_token_s for r in chosen), 4),
        bottleneck=(f"replica {slowest} stage {worst.speed.bottleneck_stage} "
                    f"({worst.stages[worst.speed.bottleneck_stage].unit.device_class.spec.id}): {worst.speed.bottleneck}"),
        tier=worst.speed.tier,
    )
    capacity = CapacityOut(
        kv_cache_tokens=min(r.kv_capacity_tokens for r in chosen),
        max_users=sum(r.max_users for r in chosen),
    )
    unused = [d.id for d in candidates.cluster.devices if d.id not in used]
    return PlanOut(status=result.status.value, replicas=replicas, performance=performance, capacity=capacity,
                   unused_devices=unused, verification=[], **base)


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 3)


def _gap(result: SolveResult) -> float | None:
    if result.objective is None or result.bound is None:
        return None
    if result.status == SolveStatus.OPTIMAL:
        return 0.0
    return round(abs(result.bound - result.objective) / max(abs(result.bound), 1e-9), 6)
