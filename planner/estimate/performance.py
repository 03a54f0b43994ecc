"""Speed of a whole replica: its pipeline stages in order, each a tensor-parallel group.

One token of one user passes through every stage in turn, so a user's decode time per token is
the sum of the stage times and the hops between them (llama.cpp's layer split and vLLM's
pipeline both work this way for a single sequence). Users of a replica decode together as one
batch; replicas run side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimate.seed import classify_decode_speed
from planner.estimate.speed import (
    estimate_allreduce_s,
    estimate_decode_stage_time,
    estimate_hop_s,
    estimate_prefill_stage_time,
)
from planner.estimate.weights import WeightEstimate
from planner.schemas.hardware import HardwareSpec
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.speed import SpeedCalibration

ACTIVATION_BYTES = 2


@dataclass(frozen=True)
class StagePlan:
    """What the speed model needs to know about one stage."""

    device: HardwareSpec
    layers: range
    tensor_parallel_size: int
    calibration: SpeedCalibration
    tp_bandwidth_gb_s: float = 0.0  # link inside the tensor-parallel group
    tp_latency_us: float = 0.0
    next_bandwidth_gb_s: float = 0.0  # hop to the next stage
    next_latency_us: float = 0.0


@dataclass(frozen=True)
class ReplicaSpeed:
    """Decode and prefill speed of one replica."""

    decode_step_s: float
    decode_tokens_per_s_per_user: float
    decode_tokens_per_s: float
    time_to_first_token_s: float
    bottleneck_stage: int
    bottleneck: str  # memory bandwidth | compute | link
    stage_seconds: tuple[float, ...]
    tier: str


def estimate_replica_speed(
    model: ModelSpec,
    mix: PrecisionMix,
    weights: WeightEstimate,
    stages: list[StagePlan],
    *,
    users: int,
    context: int,
    prompt_tokens: int | None = None,
) -> ReplicaSpeed:
    """Per-user and total decode tokens/s, time to first token and the bottleneck of one replica."""
    prompt = prompt_tokens if prompt_tokens is not None else max(1, context // 2)
    decode_context = context
    step = 0.0
    prefill = 0.0
    worst = (-1.0, 0, "memory bandwidth")
    seconds = []
    last = len(stages) - 1
    memo = weights.derived.setdefault("stage_times", {})
    for index, stage in enumerate(stages):
        t = stage.tensor_parallel_size
        key = (stage.device.id, stage.calibration, stage.layers.start, stage.layers.stop, index == 0, index == last,
               t, users, decode_context, prompt)
        if key not in memo:
            memo[key] = (
                estimate_decode_stage_time(model, mix, weights, stage.device, stage.calibration, layers=stage.layers,
                                           first=index == 0, last=index == last, tensor_parallel_size=t, batch=users,
                                           context=decode_context),
                estimate_prefill_stage_time(model, mix, weights, stage.device, stage.calibration, layers=stage.layers,
                                            last=index == last, tensor_parallel_size=t, prompt_tokens=prompt),
            )
        time, prefill_compute = memo[key]
        # Two all-reduces per layer of the batch's hidden states (Megatron tensor parallelism).
        allreduce = 2 * len(stage.layers) * estimate_allreduce_s(
            users * model.hidden_size * ACTIVATION_BYTES, t, stage.tp_bandwidth_gb_s or 1.0, stage.tp_latency_us)
        hop = 0.0
        if index < last:
            hop = estimate_hop_s(users * model.hidden_size * ACTIVATION_BYTES, stage.next_bandwidth_gb_s,
                                 stage.next_latency_us, stage.calibration)
        stage_compute = max(time.memory_s, time.compute_s)
        if index == 0:
            stage_compute += time.overhead_s
        total = stage_compute + allreduce + hop
        seconds.append(total)
        kind = time.bound if stage_compute >= allreduce + hop else "link"
        if total > worst[0]:
            worst = (total, index, kind)
        step += total
        prefill_link = 2 * len(stage.layers) * estimate_allreduce_s(
            prompt * model.hidden_size * ACTIVATION_BYTES, t, stage.tp_bandwidth_gb_s or 1.0, stage.tp_latency_us)
        if index < last:
            prefill_link += estimate_hop_s(prompt * model.hidden_size * ACTIVATION_BYTES, stage.next_bandwidth_gb_s,
                                           stage.next_latency_us, stage.calibration)
        prefill += prefill_compute + prefill_link
    per_user = 1.0 / step
    return ReplicaSpeed(
        decode_step_s=step,
        decode_tokens_per_s_per_user=per_user,
        decode_tokens_per_s=per_user * users,
        time_to_first_token_s=prefill + step,
        bottleneck_stage=worst[1],
        bottleneck=worst[2],
        stage_seconds=tuple(seconds),
        tier=classify_decode_speed(per_user),
    )
