"""One forward pass of a whole replica: its pipeline stages in order, each a tensor-parallel group.

A token of one user passes through every stage in turn. Each stage adds two all-reduces per
layer of the step's hidden states when it is tensor-parallel (Megatron tensor parallelism) and a
hop to the next stage. Engines that keep several micro-batches in flight (vLLM, SGLang) split the
users over the stages so all of them work at once; llama.cpp and MLX send one batch through the
stages in turn. planner/estimate/serving.py turns these steps into sustained serving speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from planner.estimate.host import OP_OFFLOAD_MIN_BATCH
from planner.estimate.speed import (
    StageTime,
    StepLoad,
    estimate_allreduce_s,
    estimate_hop_s,
    estimate_stage_step_time,
)
from planner.estimate.weights import WeightEstimate
from planner.schemas.hardware import HardwareSpec
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.speed import SpeedCalibration
from planner.units import gb_s_to_bytes_s

ACTIVATION_BYTES = 2  # hidden states travel in 16 bits
PREFILL_CHUNK_GROUPS = 8  # a long prompt's chunks are timed in this many groups of equal chunks


@dataclass(frozen=True)
class HostWork:
    """What a GPU stage leaves to its machine's host (llama.cpp offload, estimate/host.py): the
    layers the CPU runs before it (the first stage), the routed experts of `expert_layers` that lie
    in the stage, and the output layer (the last stage, when any layer runs on the CPU)."""

    device: HardwareSpec  # the CPU
    calibration: SpeedCalibration  # its fitted efficiencies (host-cpu)
    upload_gb_s: float  # the stage's host link, one direction
    layers: range = range(0)
    expert_layers: range = range(0)
    head: bool = False


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
    next_machine: bool = False  # the next stage is on another machine (the hop crosses the network)
    host: HostWork | None = None  # llama.cpp host offload


@dataclass(frozen=True)
class StageStep:
    """One stage's share of a step: its compute and memory, and the time on links."""

    time: StageTime
    link_s: float

    @property
    def total_s(self) -> float:
        return self.time.total_s + self.link_s

    @property
    def bound(self) -> str:
        return self.time.bound if self.time.busy_s >= self.link_s else "link"


@dataclass(frozen=True)
class ReplicaStep:
    """A step of the whole replica: the time between two tokens of one user."""

    period_s: float
    micro_batches: int
    stages: tuple[StageStep, ...]

    @property
    def bottleneck_stage(self) -> int:
        return max(range(len(self.stages)), key=lambda i: (self.stages[i].total_s, -i))

    @property
    def bound(self) -> str:
        return self.stages[self.bottleneck_stage].bound


def _stage_step(model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate, stage: StagePlan, load: StepLoad,
                first: bool, last: bool) -> StageStep:
    memo = weights.derived.setdefault("stage_steps", {})
    key = (stage, first, last, load)
    if key in memo:
        return memo[key]
    time = _host_or_device_time(model, mix, weights, stage, load, first, last)
    message = load.tokens * model.hidden_size * ACTIVATION_BYTES
    link = 0.0
    if stage.tensor_parallel_size > 1:
        per_allreduce = estimate_allreduce_s(message, stage.tensor_parallel_size, stage.tp_bandwidth_gb_s or 1.0,
                                             stage.tp_latency_us) + stage.calibration.allreduce_overhead_s
        link += 2 * len(stage.layers) * per_allreduce
    if not last:
        link += estimate_hop_s(message, stage.next_bandwidth_gb_s or 1.0, stage.next_latency_us, stage.calibration,
                               across_machines=stage.next_machine)
    out = StageStep(time, link)
    memo[key] = out
    return out


def _host_or_device_time(model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate, stage: StagePlan, load: StepLoad,
                         first: bool, last: bool) -> StageTime:
    """The stage's own time, then its host's: a batch of OP_OFFLOAD_MIN_BATCH tokens or more
    multiplies host-held weights on the GPU after copying them over the host link; a smaller one
    runs them on the CPU at the host's bandwidth (estimate/host.py)."""
    host = stage.host
    time = estimate_stage_step_time(model, mix, weights, stage.device, stage.calibration, layers=stage.layers, first=first,
                                    last=last and not (host and host.head), tensor_parallel_size=stage.tensor_parallel_size,
                                    load=load, experts_elsewhere=host.expert_layers if host else range(0))
    if host is None:
        return time
    big = load.tokens >= OP_OFFLOAD_MIN_BATCH
    held = range(max(stage.layers.start, host.expert_layers.start), min(stage.layers.stop, host.expert_layers.stop))
    parts = [(host.layers, False, False)] if host.layers else []
    parts += [(held, True, False)] if held else []
    parts += [(range(0), False, True)] if host.head and last else []
    host_s = upload_s = memory_s = compute_s = 0.0
    for layers, experts_only, head in parts:
        device, calibration = (stage.device, stage.calibration) if big else (host.device, host.calibration)
        t = estimate_stage_step_time(model, mix, weights, device, calibration, layers=layers, first=False, last=head,
                                     load=load, experts_only=experts_only)
        up = t.weight_bytes / gb_s_to_bytes_s(host.upload_gb_s) if big else 0.0
        host_s += up + t.total_s
        upload_s, memory_s, compute_s = upload_s + up, memory_s + t.memory_s, compute_s + t.compute_s
    bound = ("PCIe upload" if upload_s >= max(memory_s, compute_s) else "compute") if big else (
        "host memory bandwidth" if memory_s >= compute_s else "host compute")
    return replace(time, host_s=host_s, host_bound=bound)


def estimate_replica_step(model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate, stages: list[StagePlan],
                          load: StepLoad, *, overlap: bool) -> ReplicaStep:
    """One step of `load` through every stage. With `overlap` the load is split into as many
    micro-batches as there are stages (at most one per decoding sequence): a user's token still
    crosses every stage, but each stage serves the micro-batches one after another, so the
    period is the longer of one micro-batch's trip and the busiest stage's whole round."""
    last = len(stages) - 1
    micro = 1
    if overlap and last > 0 and load.decode >= 1:
        micro = min(len(stages), max(1, math.floor(load.decode)))
    part = StepLoad(load.decode / micro, load.context, load.prefill / micro, load.prefill_position)
    steps = tuple(_stage_step(model, mix, weights, s, part, i == 0, i == last) for i, s in enumerate(stages))
    trip = sum(s.total_s for s in steps)
    period = max(trip, micro * max(s.total_s for s in steps)) if micro > 1 else trip
    return ReplicaStep(period, micro, steps)


def estimate_prefill_s(model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate, stages: list[StagePlan],
                       prompt_tokens: int, chunk_tokens: int, *, pipelined: bool, decode: float = 0.0,
                       context: int = 1) -> float:
    """Seconds to prefill one prompt in chunks of `chunk_tokens`, each chunk sharing its forward
    pass with `decode` decoding sequences. Chunks of one prompt follow each other; with
    `pipelined` (llama.cpp) chunk k+1 enters the first stage while chunk k is on the next one."""
    chunk = max(1, min(chunk_tokens, prompt_tokens))
    count = math.ceil(prompt_tokens / chunk)
    groups = min(count, PREFILL_CHUNK_GROUPS)
    total = 0.0
    slowest_stage = 0.0
    done = 0
    for g in range(groups):
        in_group = count * (g + 1) // groups - count * g // groups
        start = done * chunk
        tokens_in_group = min(in_group * chunk, prompt_tokens - start)
        size = max(1, round(tokens_in_group / in_group))
        position = start + tokens_in_group // 2
        step = estimate_replica_step(model, mix, weights, stages, StepLoad(decode, context, size, position), overlap=False)
        total += in_group * step.period_s
        slowest_stage = max(slowest_stage, max(s.total_s for s in step.stages))
        done += in_group
    if pipelined and len(stages) > 1 and count > 1:
        # The trip of the first chunk, then one chunk out of the slowest stage per chunk after it.
        first = total / count
        return min(total, first + (count - 1) * slowest_stage)
    return total
