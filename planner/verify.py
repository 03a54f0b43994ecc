"""An independent check of a plan: every constraint recomputed from the inputs, no solver code.

It reads the plan's replicas, stages and device ids, and recomputes from the model, precision,
request and inventory: device existence and single use, tensor-parallel legality, contiguous
layer coverage, users served, memory on every device against its engine budget, and the
per-user speed floor.
"""

from __future__ import annotations

from planner.estimate.engine import estimate_engine_budget_bytes, estimate_training_capacity_bytes
from planner.estimate.memory import estimate_stage_memory, estimate_training_memory
from planner.estimate.performance import StagePlan, estimate_replica_speed
from planner.estimate.weights import estimate_weight_bytes
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.plan import PlanOut
from planner.schemas.precision import PrecisionMix
from planner.schemas.serving import ServeRequest
from planner.schemas.workload import Parallelism, TrainWorkload
from planner.schemas.speed import SpeedCalibration
from planner.topology import Topology

TOLERANCE_BYTES = 1.0


def check_plan(
    plan: PlanOut, model: ModelSpec, mix: PrecisionMix, request: ServeRequest, cluster: Cluster,
    calibrations: dict[str, SpeedCalibration], topology: Topology,
) -> list[str]:
    """Every violation found, in words; empty when the plan is sound."""
    if not plan.replicas:
        return []
    problems: list[str] = []
    devices = {d.id: d for d in cluster.devices}
    weights = estimate_weight_bytes(model, mix)
    seen: set[str] = set()
    users = 0
    for replica in plan.replicas:
        users += replica.users
        expected_start = 0
        plans = []
        for k, stage in enumerate(replica.stages):
            first, last = k == 0, k == len(replica.stages) - 1
            start, end = stage.layers
            if start != expected_start or end <= start:
                problems.append(f"replica {replica.index} stage {k}: layers {start}-{end} do not continue from {expected_start}")
            expected_start = end
            ids = [d.id for d in stage.devices]
            t = len(ids)
            if t != stage.tensor_parallel_size:
                problems.append(f"replica {replica.index} stage {k}: {t} devices for tensor-parallel size {stage.tensor_parallel_size}")
            if model.num_attention_heads % t or (model.mla is None and model.num_key_value_heads % t and t % model.num_key_value_heads):
                problems.append(f"replica {replica.index} stage {k}: tensor-parallel size {t} does not divide the heads")
            for device_id in ids:
                if device_id not in devices:
                    problems.append(f"device {device_id} is not in the inventory")
                    continue
                if device_id in seen:
                    problems.append(f"device {device_id} is used twice")
                seen.add(device_id)
            known = [devices[i] for i in ids if i in devices]
            if len({d.node for d in known}) > 1 or len({d.spec.id for d in known}) > 1:
                problems.append(f"replica {replica.index} stage {k}: tensor-parallel ranks span machines or device types")
            if not known:
                continue
            memory = estimate_stage_memory(
                model, mix, weights, stage=k, layers=range(start, end), first=first, last=last, tensor_parallel_size=t,
                users=replica.users, context=request.context, prefill_chunk=request.prefill_chunk,
                overhead_factor=request.overhead_factor, runtime_reserve_bytes=request.runtime_reserve_bytes,
            )
            for device in known:
                budget = estimate_engine_budget_bytes(device, request) + request.runtime_reserve_bytes
                if memory.total_bytes > budget + TOLERANCE_BYTES:
                    problems.append(f"{device.id} needs {memory.total_bytes / 1e9:,.2f} GB, its engine may use {budget / 1e9:,.2f} GB")
            tp_route = topology.route(ids[0], ids[1]) if t > 1 else None
            plans.append((known[0], range(start, end), t, tp_route, ids[0]))
        if expected_start != model.num_layers:
            problems.append(f"replica {replica.index}: layers end at {expected_start}, the model has {model.num_layers}")
        if request.min_tokens_per_s and plans:
            stage_plans = []
            for k, (device, layers, t, tp_route, head) in enumerate(plans):
                nxt = topology.route(head, plans[k + 1][4]) if k + 1 < len(plans) else None
                stage_plans.append(StagePlan(
                    device.spec, layers, t, calibrations[device.spec.calibration_class],
                    tp_route.bandwidth_gb_s if tp_route else 0.0, tp_route.latency_us if tp_route else 0.0,
                    nxt.bandwidth_gb_s if nxt else 0.0, nxt.latency_us if nxt else 0.0,
                ))
            speed = estimate_replica_speed(model, mix, weights, stage_plans, users=replica.users, context=request.context,
                                           prompt_tokens=request.prompt_tokens)
            if speed.decode_tokens_per_s_per_user < request.min_tokens_per_s * 0.999:
                problems.append(f"replica {replica.index}: {speed.decode_tokens_per_s_per_user:,.1f} tokens/s per user, "
                                f"below {request.min_tokens_per_s:g}")
    if users != request.users:
        problems.append(f"the replicas serve {users} users, {request.users} were asked for")
    return problems


def check_training_plan(
    plan: PlanOut, model: ModelSpec, mix: PrecisionMix, workload: TrainWorkload, cluster: Cluster,
    *, global_batch_size: int,
) -> list[str]:
    """Violations of a training plan: devices, tensor-parallel groups, layer coverage, batch
    divisibility and memory on every device, recomputed from the inputs."""
    if not plan.replicas or plan.training is None:
        return []
    t = plan.training
    problems: list[str] = []
    devices = {d.id: d for d in cluster.devices}
    seen: set[str] = set()
    if global_batch_size % (t.data_parallel_size * t.micro_batch_size):
        problems.append(f"global batch {global_batch_size} does not split into {t.data_parallel_size} ranks x micro-batch {t.micro_batch_size}")
    if len(plan.replicas) != t.data_parallel_size:
        problems.append(f"{len(plan.replicas)} data-parallel ranks, the layout says {t.data_parallel_size}")
    memory = estimate_training_memory(model, mix, workload, Parallelism(
        tensor_parallel_size=t.tensor_parallel_size, pipeline_parallel_size=t.pipeline_parallel_size,
        data_parallel_size=t.data_parallel_size))
    for replica in plan.replicas:
        expected = 0
        for k, stage in enumerate(replica.stages):
            if stage.layers[0] != expected:
                problems.append(f"rank {replica.index} stage {k}: layers do not continue from {expected}")
            expected = stage.layers[1]
            ids = [d.id for d in stage.devices]
            if len(ids) != t.tensor_parallel_size:
                problems.append(f"rank {replica.index} stage {k}: {len(ids)} devices for tensor-parallel size {t.tensor_parallel_size}")
            known = [devices[i] for i in ids if i in devices]
            if len(known) != len(ids):
                problems.append(f"rank {replica.index} stage {k}: a device is not in the inventory")
            if len({d.node for d in known}) > 1 or len({d.spec.id for d in known}) > 1:
                problems.append(f"rank {replica.index} stage {k}: tensor-parallel ranks span machines or device types")
            for device in known:
                if device.id in seen:
                    problems.append(f"device {device.id} is used twice")
                seen.add(device.id)
                need = memory.devices[k].total_bytes
                capacity = estimate_training_capacity_bytes(device)
                if need > capacity + TOLERANCE_BYTES:
                    problems.append(f"{device.id} needs {need / 1e9:,.2f} GB for training, it lends {capacity / 1e9:,.2f} GB")
        if expected != model.num_layers:
            problems.append(f"rank {replica.index}: layers end at {expected}, the model has {model.num_layers}")
    return problems
