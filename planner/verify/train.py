"""An independent check of a training plan: devices, tensor-parallel groups, layer coverage, batch
divisibility and each device's memory, recomputed tensor by tensor from the inputs without the
training-memory estimate that built the plan (the shared rules it uses are the optimizer-state
sizes, the ZeRO partition, the activation formula and the LoRA adapter shapes)."""

from __future__ import annotations

from planner.estimate.activations import (
    estimate_in_flight_microbatches,
    estimate_training_layer_activation_bytes,
    estimate_training_logits_bytes,
)
from planner.estimate.engine import estimate_training_capacity_bytes
from planner.estimate.engine_support import family_of
from planner.estimate.memory import estimate_lora_adapter_tensors
from planner.estimate.optimizer import estimate_optimizer_state_bytes
from planner.estimate.parallelism import check_tensor_parallel_size
from planner.estimate.shards import estimate_shard_fraction, is_on_stage
from planner.estimate.weights import estimate_weight_bytes
from planner.estimate.zero import check_zero_layout, estimate_zero_partition
from planner.schemas.engine import EngineProfile
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.plan import TrainLayoutOut, TrainPlan
from planner.schemas.precision import PrecisionMix
from planner.schemas.workload import TrainWorkload
from planner.units import to_gb
from planner.verify.engine import check_train_engine

TOLERANCE_BYTES = 1.0
REPORTED_TOLERANCE = 1e-6


def estimate_training_device_need(model: ModelSpec, mix: PrecisionMix, layout: TrainLayoutOut, workload: TrainWorkload,
                                  *, layers: range, stage: int) -> tuple[float, float]:
    """(bytes on the device, bytes offloaded to the host) for one device of a training stage."""
    t, p, dp = layout.tensor_parallel_size, layout.pipeline_parallel_size, layout.data_parallel_size
    first, last = stage == 0, stage == p - 1
    on_stage = [i for i in estimate_weight_bytes(model, mix).tensors
                if is_on_stage(i.tensor, model, layers, first=first, last=last)]
    wb, master = (2, 4) if workload.mixed_precision else (4, 0)
    if workload.lora is None:
        trainable = [(i.tensor, estimate_shard_fraction(i.tensor, model, t)) for i in on_stage]
        frozen = 0.0
    else:
        trainable = [(a, 1.0 / t) for a in estimate_lora_adapter_tensors(on_stage, workload)]
        frozen = sum(i.bytes * estimate_shard_fraction(i.tensor, model, t) for i in on_stage)
    shards = estimate_zero_partition(layout.zero_stage, dp)
    count = sum(tensor.params * share for tensor, share in trainable)
    params = (count * wb + frozen) / shards.parameters
    grads = count * wb / shards.gradients
    states = sum((master * tensor.params + estimate_optimizer_state_bytes(tensor, workload.optimizer)) * share
                 for tensor, share in trainable) / shards.optimizer
    host = 0.0
    if layout.offload in ("optimizer", "optimizer+params"):
        host, states = host + states, 0.0
    if layout.offload == "optimizer+params":
        host, params = host + params, 0.0
    activations = estimate_training_layer_activation_bytes(
        model, sequence_length=layout.sequence_length, micro_batch_size=layout.micro_batch_size, tensor_parallel_size=t,
        sequence_parallel=layout.sequence_parallel, recompute=layout.recompute,  # type: ignore[arg-type]
    ) * len(layers) * estimate_in_flight_microbatches(p, stage)
    if last:
        activations += estimate_training_logits_bytes(model, sequence_length=layout.sequence_length,
                                                      micro_batch_size=layout.micro_batch_size, tensor_parallel_size=t)
    overhead = workload.overhead_factor * params + workload.runtime_reserve_bytes
    return params + grads + states + activations + overhead, host


def check_train_plan(plan: TrainPlan, model: ModelSpec, mix: PrecisionMix, workload: TrainWorkload,
                     cluster: Cluster, engine: EngineProfile) -> list[str]:
    """Every violation found, in words; empty when the plan is sound."""
    layout = plan.layout
    if layout is None or not plan.ranks:
        return []
    problems: list[str] = []
    devices = {d.id: d for d in cluster.devices}
    seen: set[str] = set()
    illegal = check_tensor_parallel_size(model, layout.tensor_parallel_size) or check_zero_layout(
        layout.zero_stage, layout.data_parallel_size, layout.offload)
    if illegal:
        problems.append(illegal)
    ranks_batch = layout.data_parallel_size * layout.micro_batch_size * layout.gradient_accumulation_steps
    if ranks_batch != layout.global_batch_size:
        problems.append(f"{layout.data_parallel_size} ranks x micro-batch {layout.micro_batch_size} x "
                        f"{layout.gradient_accumulation_steps} steps is not the global batch {layout.global_batch_size}")
    if len(plan.ranks) != layout.data_parallel_size:
        problems.append(f"{len(plan.ranks)} data-parallel ranks, the layout says {layout.data_parallel_size}")
    for rank in plan.ranks:
        expected = 0
        if len(rank.stages) != layout.pipeline_parallel_size:
            problems.append(f"rank {rank.index}: {len(rank.stages)} stages, the layout says {layout.pipeline_parallel_size}")
        for k, stage in enumerate(rank.stages):
            where = f"rank {rank.index} stage {k}"
            start, end = stage.layers
            if start != expected or end <= start:
                problems.append(f"{where}: layers {start}-{end} do not continue from {expected}")
            expected = end
            ids = [d.id for d in stage.devices]
            if len(ids) != layout.tensor_parallel_size:
                problems.append(f"{where}: {len(ids)} devices for tensor-parallel size {layout.tensor_parallel_size}")
            known = [devices[i] for i in ids if i in devices]
            if len(known) != len(ids):
                problems.append(f"{where}: a device is not in the inventory")
            if len({d.node for d in known}) > 1 or len({d.spec for d in known}) > 1:
                problems.append(f"{where}: tensor-parallel ranks span machines or device types")
            if end <= start or end > model.num_layers:
                continue
            need, _ = estimate_training_device_need(model, mix, layout, workload, layers=range(start, end), stage=k)
            for device, out in zip(known, (d for d in stage.devices if d.id in devices)):
                if device.id in seen:
                    problems.append(f"device {device.id} is used twice")
                seen.add(device.id)
                capacity = estimate_training_capacity_bytes(device)
                if need > capacity + TOLERANCE_BYTES:
                    problems.append(f"{device.id} needs {to_gb(need):,.2f} GB for training, it lends {to_gb(capacity):,.2f} GB")
                if abs(out.memory.total_bytes - need) > max(TOLERANCE_BYTES * 6, REPORTED_TOLERANCE * need):
                    problems.append(f"{device.id}: the plan says {out.memory.total_bytes:,} bytes, recomputed {need:,.0f}")
        if expected != model.num_layers:
            problems.append(f"rank {rank.index}: layers end at {expected}, the model has {model.num_layers}")
    families = list(dict.fromkeys(f for f in (family_of(i.format_id, mix) for i in estimate_weight_bytes(model, mix).tensors) if f))
    return problems + check_train_engine(plan, engine, cluster, families, model.num_layers)
