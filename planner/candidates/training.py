"""Training layouts: tensor x pipeline x data parallel with a ZeRO stage, offload and
recomputation, each with its per-device memory and step time precomputed."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from planner.candidates.classes import DeviceClass, build_device_classes, tp_options
from planner.estimate.engine import estimate_training_capacity_bytes
from planner.estimate.engine_support import check_mix_on_device
from planner.estimate.memory import estimate_training_memory
from planner.estimate.parameters import estimate_parameters
from planner.estimate.shards import split_layers, split_layers_first_last
from planner.estimate.stage import MemoryEstimate
from planner.estimate.training_speed import (
    TrainingStep,
    estimate_training_flops,
    estimate_training_step,
)
from planner.estimate.zero import (
    OFFLOADS,
    check_zero_layout,
    estimate_zero_partition,
    is_zero_useful,
)
from planner.schemas.engine import EngineProfile
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.speed import SpeedCalibration
from planner.schemas.training import TrainRequest
from planner.schemas.workload import Parallelism, Recompute, TrainWorkload
from planner.topology import Topology
from planner.units import tflops_to_flops, to_gb

RECOMPUTES: tuple[Recompute, ...] = ("none", "selective", "full")


@dataclass(frozen=True)
class TrainingLayout:
    """One way to train: a class of devices split tp x pp x dp, with its memory and speed."""

    index: int
    device_class: DeviceClass
    tp: int
    pp: int
    dp: int
    zero_stage: int
    offload: str
    recompute: str
    microbatches: int  # per data-parallel rank per step (gradient accumulation)
    memory: MemoryEstimate
    capacity_bytes: float  # what the device lends to training
    step: TrainingStep
    tokens_per_s: float
    mfu: float

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp


@dataclass
class TrainingCandidates:
    """Layouts the solver chooses one of, and why others were rejected."""

    layouts: list[TrainingLayout]
    rejections: list[str]
    stopped_early: bool = False  # the deadline cut the search short


def _powers(limit: int) -> list[int]:
    out, v = [], 1
    while v <= limit:
        out.append(v)
        v *= 2
    return out


def _pcie_gb_s(device_class: DeviceClass) -> float:
    """Host-link bandwidth per direction: 8 GT/s x 128/130 / 8 = 0.985 GB/s per PCIe 3.0 lane,
    doubling each generation (PCI-SIG); x16 at generation 4 when the catalog does not say."""
    spec = device_class.spec
    generation = spec.pcie_generation or 4
    lanes = spec.pcie_lanes or 16
    return 8 * 128 / 130 / 8 * 2 ** (generation - 3) * lanes


def _capacity(device_class: DeviceClass, cluster: Cluster) -> float:
    device = next(d for d in cluster.devices if d.id == device_class.device_ids[0][0])
    return estimate_training_capacity_bytes(device)


def build_training_workload(request: TrainRequest, *, tp: int, zero_stage: int, offload: str, recompute: str) -> TrainWorkload:
    """The estimate's view of one layout of a training request (sequence parallel with tp > 1)."""
    return TrainWorkload(
        micro_batch_size=request.micro_batch_size, sequence_length=request.sequence_length, optimizer=request.optimizer,
        mixed_precision=request.mixed_precision, recompute=recompute, sequence_parallel=tp > 1, zero_stage=zero_stage,
        offload=offload, lora=request.lora, overhead_factor=request.overhead_factor,
        runtime_reserve_bytes=request.runtime_reserve_bytes,
    )


def training_stages(engine: EngineProfile, num_layers: int, pipeline_parallel_size: int) -> list[range]:
    """The layer ranges the engine gives its pipeline stages."""
    assert engine.training is not None
    if engine.training.pipeline_split == "first_last":
        return split_layers_first_last(num_layers, pipeline_parallel_size)
    return split_layers(num_layers, pipeline_parallel_size)


def check_training_layout(engine: EngineProfile, cls: DeviceClass, tp: int, pp: int, dp: int, zero: int, offload: str) -> str | None:
    """Why the training engine cannot run this layout, or None."""
    rules, layout = engine.training, engine.layout
    assert rules is not None
    if tp > 1 and layout.tensor_parallel == "none":
        return f"{engine.name} runs no tensor parallelism"
    if pp > 1 and layout.pipeline == "none":
        return f"{engine.name} runs no pipeline"
    if zero not in rules.zero_stages:
        return f"{engine.name} runs ZeRO stages {', '.join(map(str, rules.zero_stages))}"
    if pp > 1 and rules.pipeline_max_zero_stage is not None and zero > rules.pipeline_max_zero_stage:
        return f"{engine.name} rejects ZeRO-{zero} with pipeline parallelism"
    if offload not in rules.offloads:
        return f"{engine.name} does not offload {offload}"
    devices = tp * pp * dp
    if layout.same_devices_per_machine and devices > cls.devices_per_node and devices % cls.devices_per_node:
        return f"{engine.name} runs the same number of devices on every machine"
    return None


def build_training_candidates(
    model: ModelSpec, mix: PrecisionMix, request: TrainRequest, cluster: Cluster,
    calibrations: dict[str, SpeedCalibration], topology: Topology, engine: EngineProfile, deadline: float | None = None,
) -> TrainingCandidates:
    """Every layout the engine runs that fits, per device class (training runs on one class of
    devices), built until `deadline` (a time.perf_counter() value) at the latest."""
    counts = estimate_parameters(model)
    active = counts.active_parameters

    classes = build_device_classes(cluster, estimate_training_capacity_bytes)
    layouts: list[TrainingLayout] = []
    rejections: list[str] = []
    zeros = [request.zero_stage] if request.zero_stage != "auto" else [0, 1, 2, 3]
    offloads = [request.offload] if request.offload != "auto" else list(OFFLOADS)
    recomputes = [request.recompute] if request.recompute != "auto" else list(RECOMPUTES)
    for cls in classes:
        unsupported = check_mix_on_device(engine, model, mix, cls.spec)
        if unsupported:
            rejections.append(f"{cls.key}: {unsupported}")
            continue
        capacity = _capacity(cls, cluster)
        calibration = calibrations[cls.spec.calibration_class]
        intra = topology.route(cls.device_ids[0][0], cls.device_ids[0][-1]) if cls.devices_per_node > 1 else None
        across = topology.route(cls.device_ids[0][0], cls.device_ids[1][0]) if len(cls.nodes) > 1 else intra
        host = next(n for n in cluster.nodes if n.name == cls.nodes[0]).host_memory_bytes
        tps = [request.tensor_parallel_size] if request.tensor_parallel_size else tp_options(cls, model)
        pps = [request.pipeline_parallel_size] if request.pipeline_parallel_size else _powers(model.num_layers)
        for tp, pp in itertools.product(tps, pps):
            if tp > cls.devices_per_node or tp * pp > cls.devices:
                rejections.append(f"{cls.key}: tp{tp} pp{pp} needs {tp * pp} devices ({tp} per machine)")
                continue
            dps = sorted(set(_powers(cls.devices // (tp * pp))) | {cls.devices // (tp * pp)} - {0})
            if request.data_parallel_size:
                dps = [request.data_parallel_size] if request.data_parallel_size * tp * pp <= cls.devices else []
                if not dps:
                    rejections.append(f"{cls.key}: tp{tp} pp{pp} dp{request.data_parallel_size} needs more devices than {cls.devices}")
            for dp in dps:
                if request.global_batch_size % (dp * request.micro_batch_size):
                    continue
                m = request.global_batch_size // (dp * request.micro_batch_size)
                for zero, offload, recompute in itertools.product(zeros, offloads, recomputes):
                    if deadline is not None and time.perf_counter() > deadline:
                        return TrainingCandidates(layouts, rejections, stopped_early=True)
                    if check_zero_layout(zero, dp, offload) or not is_zero_useful(zero, dp, offload):
                        continue
                    label = f"{cls.key}: tp{tp} pp{pp} dp{dp} ZeRO-{zero} offload {offload} recompute {recompute}"
                    refused = check_training_layout(engine, cls, tp, pp, dp, zero, offload)
                    if refused:
                        if request.zero_stage != "auto" or request.offload != "auto":
                            rejections.append(f"{label}: {refused}")
                        continue
                    workload = build_training_workload(request, tp=tp, zero_stage=zero, offload=offload, recompute=recompute)
                    memory = estimate_training_memory(
                        model, mix, workload,
                        Parallelism(tensor_parallel_size=tp, pipeline_parallel_size=pp, data_parallel_size=dp),
                        training_stages(engine, model.num_layers, pp))
                    peak = memory.peak
                    if peak.total_bytes > capacity:
                        rejections.append(f"{label}: needs {to_gb(peak.total_bytes):,.1f} GB per device, has "
                                          f"{to_gb(capacity):,.1f} GB")
                        continue
                    per_node = min(cls.devices_per_node, tp * pp * dp)
                    if host and peak.cpu_offload_bytes * per_node > host:
                        rejections.append(f"{label}: offloads {to_gb(peak.cpu_offload_bytes * per_node):,.0f} GB per machine, "
                                          f"host memory is {to_gb(host):,.0f} GB")
                        continue
                    trainable = peak.gradients_bytes * estimate_zero_partition(zero, dp).gradients / 2  # 16-bit gradients
                    tokens = request.global_batch_size * request.sequence_length
                    fraction = 0.0 if request.lora else 1.0
                    flops = estimate_training_flops(active, model.num_layers, model.hidden_size, request.sequence_length,
                                                    tokens, recompute, fraction)
                    step = estimate_training_step(
                        flops=flops, devices=tp * pp * dp, tflops=cls.spec.bf16, compute_efficiency=calibration.compute_efficiency,
                        pipeline_parallel_size=pp, microbatches=m, tensor_parallel_size=tp,
                        tp_message_bytes=request.micro_batch_size * request.sequence_length * model.hidden_size * 2,
                        tp_collectives=4 * -(-model.num_layers // pp) * m,
                        tp_bandwidth_gb_s=intra.bandwidth_gb_s if intra else 0.0, tp_latency_us=intra.latency_us if intra else 0.0,
                        data_parallel_size=dp, gradient_bytes=trainable * 2, zero_stage=zero,
                        dp_bandwidth_gb_s=(across.bandwidth_gb_s if (across and dp * tp * pp > cls.devices_per_node) else
                                           intra.bandwidth_gb_s if intra else 0.0),
                        dp_latency_us=across.latency_us if across else 0.0,
                        offload_bytes=4 * trainable if offload != "none" else 0.0,
                        pcie_bandwidth_gb_s=_pcie_gb_s(cls),
                    )
                    mfu = flops / (step.total_s * tp * pp * dp * tflops_to_flops(cls.spec.bf16))
                    layouts.append(TrainingLayout(
                        len(layouts), cls, tp, pp, dp, zero, offload, recompute, m, memory,
                        capacity, step,
                        tokens / step.total_s, mfu,
                    ))
    return TrainingCandidates(layouts, rejections)
