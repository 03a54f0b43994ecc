"""Turn the chosen recipe copies into concrete devices and a ServePlan (no solver calls here).

Every number in the plan was computed by the candidates step and is copied, not recomputed: each
stage's memory and KV capacity, each replica's speed.
"""

from __future__ import annotations

from planner.candidates.recipes import CandidateSet, Recipe
from planner.schemas.plan import (
    CapacityOut,
    DeviceMemoryOut,
    DeviceOut,
    EngineSettingsOut,
    HostOffloadOut,
    InventoryRef,
    PerformanceOut,
    ReplicaOut,
    ServePlan,
    ServePlanRequest,
    SolverOut,
    SolveStatus,
    StageOut,
)
from planner.solver.solve import SolveResult


class AssignmentError(Exception):
    """The chosen copies do not fit the devices (a solver or candidate bug, never user input)."""


def assign_devices(candidates: CandidateSet, copies: dict[int, int],
                   runs: dict[int, tuple[dict[int, int], ...]] | None = None) -> list[tuple[int, list[list[str]]]]:
    """For each replica (recipe index, device ids per stage). Each run of stages a recipe keeps in
    one machine (Recipe.blocks) goes into one machine whole, largest runs first; in a class the
    solver packed (`runs`: per machine, the runs of each size it holds) into a machine it left
    room for, elsewhere into any machine with room (run sizes there form a chain, so any machine
    with room fits: candidates/packing.py). Of the machines that fit, one the replica already
    uses, then the one with the fewest free devices."""
    runs = runs or {}
    free: dict[int, list[list[str]]] = {c.index: [list(ids) for ids in c.device_ids] for c in candidates.classes}
    slots = {cls: [dict(machine) for machine in per_machine] for cls, per_machine in runs.items()}
    replicas: list[tuple[int, list[list[str] | None]]] = []
    blocks = []
    for index in sorted(copies):
        recipe = candidates.recipes[index]
        for _ in range(copies[index]):
            r = len(replicas)
            replicas.append((index, [None] * len(recipe.stages)))
            for b, (cls, devices, stages) in enumerate(recipe.blocks):
                blocks.append((-devices, r, b, cls, stages, recipe.stages[stages[0]].unit.tp))
    used_nodes: dict[int, set[tuple[int, int]]] = {}
    for need, r, _, cls, stages, tp in sorted(blocks, key=lambda b: b[:3]):
        nodes = free[cls]
        if cls in slots:
            fits = [n for n, left in enumerate(slots[cls]) if left.get(-need, 0) > 0]
        else:
            fits = [n for n, ids in enumerate(nodes) if len(ids) >= -need]
        if not fits:
            raise AssignmentError(f"device class {cls} has no machine left for a run of {-need} devices (replica {r})")
        mine = used_nodes.get(r, set())
        choice = min(fits, key=lambda n: ((cls, n) not in mine, len(nodes[n]), n))
        if cls in slots:
            slots[cls][choice][-need] -= 1
        for k in stages:
            # A group over whole machines takes a machine per run; any other stage takes its tp devices here.
            take = min(tp, -need)
            replicas[r][1][k] = (replicas[r][1][k] or []) + nodes[choice][:take]
            del nodes[choice][:take]
        used_nodes.setdefault(r, set()).add((cls, choice))
    return [(index, [ids for ids in stages if ids is not None]) for index, stages in replicas]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _solver_out(candidates: CandidateSet, result: SolveResult) -> SolverOut:
    gap = None
    if result.objective is not None and result.bound is not None:
        gap = 0.0 if result.status == SolveStatus.OPTIMAL else round(
            abs(result.bound - result.objective) / max(abs(result.bound), 1e-9), 6)
    return SolverOut(
        status=result.status, objective_name=result.objective_name, objective_unit=result.objective_unit,
        objective=_round(result.objective), bound=_round(result.bound), gap=gap, candidates=len(candidates.recipes),
        rejected=len(candidates.rejections), stopped_early=candidates.stopped_early, cut=list(candidates.cut),
    )


def explain_replica_bottleneck(recipe: Recipe) -> str:
    """What limits a replica, in words: the binding resource of its slowest stage (or the prompts
    competing with decode), and a cache too small to take more users."""
    speed = recipe.speed
    spec = recipe.stages[speed.bottleneck_stage].unit.device_class.spec.id
    out = speed.bottleneck if speed.bottleneck == "prefill competition" else f"stage {speed.bottleneck_stage} ({spec}): {speed.bottleneck}"
    if recipe.capacity.max_users <= recipe.users:
        out += f"; memory limits the batch (the cache holds {recipe.capacity.max_users} users)"
    return out


def _replica(candidates: CandidateSet, r: int, recipe: Recipe, stage_ids: list[list[str]]) -> ReplicaOut:
    devices = {d.id: d for d in candidates.cluster.devices}
    stages = []
    last = len(recipe.stages) - 1
    for k, (stage, ids) in enumerate(zip(recipe.stages, stage_ids)):
        m = stage.memory
        parts = [round(m.weights_bytes), round(m.kv_cache_bytes), round(m.activations_bytes), round(m.overhead_bytes)]
        memory = DeviceMemoryOut(weights_bytes=parts[0], kv_cache_bytes=parts[1], activations_bytes=parts[2],
                                 overhead_bytes=parts[3], total_bytes=sum(parts), capacity_bytes=round(stage.capacity_bytes))
        outs = [DeviceOut(id=i, node=devices[i].node, index=devices[i].index, type=devices[i].spec.id, memory=memory) for i in ids]
        stages.append(StageOut(
            index=k, layers=(stage.first_layer, stage.last_layer_exclusive), tensor_parallel_size=stage.unit.tp,
            holds_embedding=k == 0 and not (recipe.host and recipe.host.layers),
            holds_lm_head=k == last and not (recipe.host and recipe.host.head), decode_step_s=round(recipe.speed.stage_seconds[k], 6),
            kv_cache_tokens=stage.kv_cache_tokens, devices=outs,
        ))
    settings, capacity = recipe.settings, recipe.capacity
    engine = EngineSettingsOut(
        memory_fraction=settings.memory_fraction, batch_tokens=settings.batch_tokens,
        max_sequences=settings.sequences(recipe.users), block_size=settings.block_size, cuda_graphs=settings.cuda_graphs,
        kv_cache_memory_bytes=settings.kv_cache_memory_bytes, context_tokens=candidates.request.context,
        notes=list(settings.notes),
    )
    speed = recipe.speed
    host = None
    if recipe.host is not None:
        h = recipe.host
        node = devices[stage_ids[0][0]].node
        host = HostOffloadOut(node=node, layers=(0, h.layers), expert_layers=(0, h.expert_layers), holds_lm_head=h.head,
                              weights_bytes=round(h.weights_bytes), kv_cache_bytes=round(h.kv_cache_bytes),
                              total_bytes=round(h.weights_bytes) + round(h.kv_cache_bytes), capacity_bytes=round(h.capacity_bytes),
                              memory_bandwidth_gb_s=h.machine.bandwidth_gb_s, cpu_cores=h.machine.cpu_cores)
    return ReplicaOut(
        index=r, users=recipe.users, decode_tokens_per_s_per_user=round(speed.decode_tokens_per_s_per_user, 3),
        decode_tokens_per_s=round(speed.decode_tokens_per_s, 3),
        decode_only_tokens_per_s_per_user=round(1.0 / speed.decode_only_step_s, 3),
        time_to_first_token_s=round(speed.time_to_first_token_s, 4), queue_s=round(speed.queue_s, 4),
        prefill_tokens_per_s=round(candidates.request.prompt_tokens / speed.prefill_alone_s, 2),
        requests_per_s=round(speed.requests_per_s, 4), prefill_share=round(speed.prefill_share, 4),
        bottleneck=explain_replica_bottleneck(recipe), engine=engine,
        kv_cache_tokens=capacity.kv_cache_tokens, max_concurrency=round(capacity.max_concurrency, 2),
        max_users=capacity.max_users, longest_sequence_tokens=capacity.longest_sequence_tokens, stages=stages,
        host_offload=host,
    )


def build_serve_plan(candidates: CandidateSet, result: SolveResult, *, request: ServePlanRequest,
                     inventory: InventoryRef) -> ServePlan:
    """The plan document for a solve result (no replicas when there is no plan)."""
    solver = _solver_out(candidates, result)
    all_ids = [d.id for d in candidates.cluster.devices]
    if result.status not in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        return ServePlan(request=request, inventory=inventory, replicas=[], performance=None, capacity=None,
                         unused_devices=all_ids, verification=[], solver=solver)
    assigned = assign_devices(candidates, result.copies, result.runs)
    replicas = [_replica(candidates, r, candidates.recipes[index], ids) for r, (index, ids) in enumerate(assigned)]
    used = {d.id for replica in replicas for stage in replica.stages for d in stage.devices}
    chosen = [candidates.recipes[index] for index, _ in assigned]
    slowest = min(range(len(chosen)), key=lambda i: (chosen[i].speed.decode_tokens_per_s_per_user, i))
    worst = chosen[slowest]
    performance = PerformanceOut(
        decode_tokens_per_s_per_user=round(worst.speed.decode_tokens_per_s_per_user, 3),
        decode_tokens_per_s_total=round(sum(r.tokens_per_s for r in chosen), 3),
        time_to_first_token_s=round(max(r.speed.time_to_first_token_s for r in chosen), 4),
        requests_per_s=round(sum(r.speed.requests_per_s for r in chosen), 4),
        prompt_tokens=request.prompt_tokens or 1, output_tokens=request.output_tokens or 1,
        bottleneck=f"replica {slowest}{' ' if worst.speed.bottleneck != 'prefill competition' else ': '}{explain_replica_bottleneck(worst)}",
        tier=worst.speed.tier,
    )
    capacity = CapacityOut(kv_cache_tokens=min(r.capacity.kv_cache_tokens for r in chosen),
                           max_concurrency=round(min(r.capacity.max_concurrency for r in chosen), 2),
                           max_users=sum(r.max_users for r in chosen),
                           longest_sequence_tokens=max(r.capacity.longest_sequence_tokens for r in chosen))
    return ServePlan(request=request, inventory=inventory, replicas=replicas, performance=performance, capacity=capacity,
                     unused_devices=[i for i in all_ids if i not in used], verification=[], solver=solver)
