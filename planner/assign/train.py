"""Turn the chosen training layout into concrete devices and a TrainPlan."""

from __future__ import annotations

from planner.candidates.training import TrainingCandidates, TrainingLayout
from planner.schemas.inventory import Cluster
from planner.schemas.plan import (
    InventoryRef,
    SolverOut,
    SolveStatus,
    TrainDeviceMemoryOut,
    TrainDeviceOut,
    TrainLayoutOut,
    TrainPerformanceOut,
    TrainPlan,
    TrainPlanRequest,
    TrainRankOut,
    TrainStageOut,
)
from planner.solver.training import TrainingChoice

OBJECTIVE = ("training_tokens_per_s", "tokens/s")


def assign_training_devices(layout: TrainingLayout) -> list[list[list[str]]]:
    """Device ids per data-parallel rank, per pipeline stage: tensor-parallel groups fill machines
    in order, pipeline stages follow each other inside a machine before crossing to the next."""
    pool = [device_id for ids in layout.device_class.device_ids for device_id in ids]
    groups = [pool[i:i + layout.tp] for i in range(0, layout.tp * layout.pp * layout.dp, layout.tp)]
    return [groups[r * layout.pp:(r + 1) * layout.pp] for r in range(layout.dp)]


def _memory(layout: TrainingLayout, stage: int) -> TrainDeviceMemoryOut:
    m = layout.memory.devices[stage]
    parts = {name: round(getattr(m, name)) for name in
             ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "overhead_bytes")}
    return TrainDeviceMemoryOut(**parts, total_bytes=sum(parts.values()), capacity_bytes=round(layout.capacity_bytes),
                                cpu_offload_bytes=round(m.cpu_offload_bytes))


def build_train_plan(candidates: TrainingCandidates, choice: TrainingChoice, cluster: Cluster, *,
                     request: TrainPlanRequest, inventory: InventoryRef) -> TrainPlan:
    """The plan document for a training choice (no layout when there is no plan)."""
    solver = SolverOut(status=choice.status, objective_name=OBJECTIVE[0], objective_unit=OBJECTIVE[1],
                       objective=None if choice.objective is None else round(choice.objective, 3),
                       bound=None if choice.bound is None else round(choice.bound, 3),
                       gap=0.0 if choice.status == SolveStatus.OPTIMAL else None,
                       candidates=len(candidates.layouts), rejected=len(candidates.rejections),
                       stopped_early=candidates.stopped_early)
    all_ids = [d.id for d in cluster.devices]
    if choice.index is None:
        return TrainPlan(request=request, inventory=inventory, layout=None, ranks=[], performance=None,
                         unused_devices=all_ids, verification=[], solver=solver)
    layout = candidates.layouts[choice.index]
    devices = {d.id: d for d in cluster.devices}
    ranks = []
    for r, stages in enumerate(assign_training_devices(layout)):
        outs = []
        for k, ids in enumerate(stages):
            memory = _memory(layout, k)
            first, last = layout.memory.devices[k].layers
            outs.append(TrainStageOut(
                index=k, layers=(first, last), holds_embedding=k == 0, holds_lm_head=k == layout.pp - 1,
                devices=[TrainDeviceOut(id=i, node=devices[i].node, index=devices[i].index, type=devices[i].spec.id, memory=memory) for i in ids],
            ))
        ranks.append(TrainRankOut(index=r, stages=outs))
    used = {d.id for rank in ranks for stage in rank.stages for d in stage.devices}
    layout_out = TrainLayoutOut(
        device_type=layout.device_class.spec.id, tensor_parallel_size=layout.tp, pipeline_parallel_size=layout.pp,
        data_parallel_size=layout.dp, zero_stage=layout.zero_stage, offload=layout.offload, recompute=layout.recompute,
        sequence_parallel=layout.tp > 1, micro_batch_size=request.micro_batch_size,
        gradient_accumulation_steps=layout.microbatches, global_batch_size=request.global_batch_size,
        sequence_length=request.sequence_length,
    )
    performance = TrainPerformanceOut(step_time_s=round(layout.step.total_s, 4), tokens_per_s=round(layout.tokens_per_s, 1),
                                      mfu=round(layout.mfu, 4), bottleneck=layout.step.bottleneck)
    return TrainPlan(request=request, inventory=inventory, layout=layout_out, ranks=ranks, performance=performance,
                     unused_devices=[i for i in all_ids if i not in used], verification=[], solver=solver)
