"""Turn the chosen training layout into concrete devices and a PlanOut."""

from __future__ import annotations

from planner.candidates.training import TrainingCandidates, TrainingLayout
from planner.schemas.plan import DeviceMemoryOut, DeviceOut, PlanOut, ReplicaOut, SolverOut, StageOut, TrainingOut
from planner.schemas.inventory import Cluster
from planner.solver.training import TrainingChoice


def assign_training_devices(layout: TrainingLayout) -> list[list[list[str]]]:
    """Device ids per data-parallel rank, per pipeline stage: tensor-parallel groups fill machines
    in order, pipeline stages follow each other inside a machine before crossing to the next."""
    pool = [device_id for ids in layout.device_class.device_ids for device_id in ids]
    groups = [pool[i:i + layout.tp] for i in range(0, layout.tp * layout.pp * layout.dp, layout.tp)]
    return [groups[r * layout.pp:(r + 1) * layout.pp] for r in range(layout.dp)]


def build_training_plan(candidates: TrainingCandidates, choice: TrainingChoice, cluster: Cluster, *, model_name: str,
                        request_summary: dict, wall_s: float) -> PlanOut:
    """The plan document for a training choice."""
    solver = SolverOut(status=choice.status.value, wall_s=round(wall_s, 3), objective_name="training_tokens_per_s",
                       objective=None if choice.objective is None else round(choice.objective, 3),
                       bound=None if choice.bound is None else round(choice.bound, 3),
                       gap=0.0 if choice.status.value == "optimal" else None,
                       candidates=len(candidates.layouts), rejected=len(candidates.rejections))
    if choice.index is None:
        return PlanOut(status=choice.status.value, model=model_name, inventory=cluster.name, request=request_summary,
                       replicas=[], performance=None, capacity=None, unused_devices=[d.id for d in cluster.devices],
                       verification=[], solver=solver)
    layout = candidates.layouts[choice.index]
    devices = {d.id: d for d in cluster.devices}
    replicas = []
    used: set[str] = set()
    for r, stages in enumerate(assign_training_devices(layout)):
        outs = []
        for k, ids in enumerate(stages):
            memory = layout.memory.devices[k]
            parts = {name: round(getattr(memory, name)) for name in
                     ("weights_bytes", "kv_cache_bytes", "activations_bytes", "overhead_bytes", "gradients_bytes", "optimizer_bytes")}
            total = sum(parts.values())
            used.update(ids)
            outs.append(StageOut(
                index=k, layers=memory.layers, tensor_parallel_size=layout.tp, holds_embedding=k == 0,
                holds_lm_head=k == layout.pp - 1, decode_step_s=0.0,
                devices=[DeviceOut(id=i, node=devices[i].node, type=devices[i].spec.id, memory=DeviceMemoryOut(
                    **parts, total_bytes=total, capacity_bytes=round(layout.budget_bytes),
                )) for i in ids],
            ))
        replicas.append(ReplicaOut(index=r, users=0, decode_tokens_per_s_per_user=0.0, time_to_first_token_s=0.0,
                                   kv_cache_tokens=0, stages=outs))
    training = TrainingOut(
        device_type=layout.device_class.spec.id, tensor_parallel_size=layout.tp, pipeline_parallel_size=layout.pp,
        data_parallel_size=layout.dp, zero_stage=layout.zero_stage, offload=layout.offload, recompute=layout.recompute,
        micro_batch_size=request_summary["micro_batch_size"], gradient_accumulation_steps=layout.microbatches,
        global_batch_size=request_summary["global_batch_size"], sequence_length=request_summary["sequence_length"],
        step_time_s=round(layout.step.total_s, 4), tokens_per_s=round(layout.tokens_per_s, 1), mfu=round(layout.mfu, 4),
        bottleneck=layout.step.bottleneck, cpu_offload_bytes_per_device=round(layout.memory.peak.cpu_offload_bytes),
    )
    return PlanOut(status=choice.status.value, model=model_name, inventory=cluster.name, request=request_summary,
                   replicas=replicas, performance=None, capacity=None,
                   unused_devices=[d.id for d in cluster.devices if d.id not in used], verification=[], solver=solver,
                   training=training)
