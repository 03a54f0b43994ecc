"""Per-device memory for serving and training under tensor, pipeline and data parallelism.

How tensors divide is estimate/shards.py; a serving stage's memory is estimate/stage.py. Data
parallelism replicates everything in serving; in training ZeRO partitions optimizer states
(stage 1), gradients (2) and parameters (3) across the data-parallel ranks (estimate/zero.py).
"""

from __future__ import annotations

from planner.estimate.activations import (
    estimate_in_flight_microbatches,
    estimate_training_layer_activation_bytes,
    estimate_training_logits_bytes,
)
from planner.estimate.engines import EngineMemory, EngineSettings
from planner.estimate.engines.generic import GenericMemory
from planner.estimate.optimizer import estimate_optimizer_state_bytes
from planner.estimate.parameters import TensorCount
from planner.estimate.shards import estimate_shard_fraction, is_on_stage, split_layers
from planner.estimate.stage import DeviceMemory, MemoryEstimate, StageSizer
from planner.estimate.weights import TensorBytes, estimate_weight_bytes
from planner.estimate.zero import estimate_zero_partition
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.serving import ServeRequest
from planner.schemas.workload import Parallelism, ServeWorkload, TrainWorkload


def estimate_serving_memory(
    model: ModelSpec, mix: PrecisionMix, workload: ServeWorkload, parallelism: Parallelism | None = None,
    stages: list[range] | None = None, embedding_on_host: bool = False, engine: EngineMemory | None = None,
    settings: EngineSettings | None = None,
) -> MemoryEstimate:
    """Memory per device to serve `workload.users` sequences of `workload.context` tokens, with
    the layers split over the pipeline stages as given, else evenly as vLLM splits them, in the
    engine's accounting (engine-neutral without one)."""
    parallelism = parallelism or Parallelism()
    stages = stages or split_layers(model.num_layers, parallelism.pipeline_parallel_size)
    engine = engine or GenericMemory()
    if settings is None:
        settings = engine.settings(None, workload_request(workload), model=model, tp=parallelism.tensor_parallel_size,
                                   pp=len(stages))
    sizer = StageSizer(model, mix, estimate_weight_bytes(model, mix), context=workload.context, engine=engine,
                       overhead_factor=workload.overhead_factor, runtime_reserve_bytes=workload.runtime_reserve_bytes,
                       embedding_on_host=embedding_on_host)
    devices = [
        sizer.memory(layers, first=s == 0, last=s == len(stages) - 1, tp=parallelism.tensor_parallel_size,
                     users=workload.users, settings=settings, pipeline_stages=len(stages), stage=s)
        for s, layers in enumerate(stages)
    ]
    return MemoryEstimate(tuple(devices), parallelism, settings)


def workload_request(workload: ServeWorkload) -> ServeRequest:
    """The serving request a `plan memory` workload stands for (the engine's defaults elsewhere)."""
    return ServeRequest(users=workload.users, context=workload.context, prefill_chunk=workload.prefill_chunk,
                        runtime_reserve_bytes=workload.runtime_reserve_bytes)


def estimate_lora_adapter_tensors(tensors: list[TensorBytes], workload: TrainWorkload) -> list[TensorCount]:
    """Adapter matrices A (r x in) and B (out x r) for every targeted projection."""
    lora = workload.lora
    assert lora is not None
    out = []
    for item in tensors:
        tensor = item.tensor
        if not tensor.is_matrix or tensor.component not in lora.targets or tensor.kind in ("ffn_gate_inp",):
            continue
        n_in = tensor.row_size
        n_out = tensor.params // n_in
        copies = 1
        if tensor.component == "experts":
            copies = round(tensor.params / (n_in * n_out)) or 1
        out.append(TensorCount(tensor.component, tensor.kind, copies * lora.rank * n_in, n_in, tensor.layer))
        out.append(TensorCount(tensor.component, tensor.kind, copies * lora.rank * n_out, lora.rank, tensor.layer))
    return out


def estimate_training_memory(
    model: ModelSpec, mix: PrecisionMix, workload: TrainWorkload, parallelism: Parallelism | None = None,
    stages: list[range] | None = None,
) -> MemoryEstimate:
    """Memory per device for one training step (mixed precision, ZeRO, offload, LoRA/QLoRA).

    Full training keeps 16-bit weights and gradients plus fp32 master weights and optimizer states:
    2 + 2 + 12 bytes per parameter for Adam (Rajbhandari et al. 2020, ZeRO s3); ZeRO stage 1, 2, 3
    divide the optimizer states, then the gradients, then the parameters by the data-parallel size.
    """
    parallelism = parallelism or Parallelism()
    t, p, dp = parallelism.tensor_parallel_size, parallelism.pipeline_parallel_size, parallelism.data_parallel_size
    zero = workload.zero_stage
    stages = stages or split_layers(model.num_layers, p)
    weight_bytes = 2 if workload.mixed_precision else 4
    master_bytes = 4 if workload.mixed_precision else 0
    all_weights = estimate_weight_bytes(model, mix)
    devices = []
    for s, layers in enumerate(stages):
        tensors = [i for i in all_weights.tensors
                   if is_on_stage(i.tensor, model, layers, first=s == 0, last=s == len(stages) - 1)]
        notes: list[str] = []
        if workload.lora is None:
            trainable = [(i.tensor, estimate_shard_fraction(i.tensor, model, t)) for i in tensors]
            frozen_bytes = 0.0
        else:
            trainable = [(a, 1.0 / t) for a in estimate_lora_adapter_tensors(tensors, workload)]
            frozen_bytes = sum(i.bytes * estimate_shard_fraction(i.tensor, model, t) for i in tensors)
            notes.append(f"frozen base in {mix.weights.id}; adapters of rank {workload.lora.rank}")
        n_trainable = sum(tensor.params * share for tensor, share in trainable)
        params = n_trainable * weight_bytes + frozen_bytes
        grads = n_trainable * weight_bytes
        optim = sum(
            (master_bytes * tensor.params + estimate_optimizer_state_bytes(tensor, workload.optimizer)) * share
            for tensor, share in trainable
        )
        shards = estimate_zero_partition(zero, dp)
        optim /= shards.optimizer
        grads /= shards.gradients
        params /= shards.parameters
        cpu = 0.0
        if workload.offload != "none":
            cpu += optim
            optim = 0.0
        if workload.offload == "optimizer+params":
            cpu += params
            params = 0.0
        per_layer = estimate_training_layer_activation_bytes(
            model, sequence_length=workload.sequence_length, micro_batch_size=workload.micro_batch_size,
            tensor_parallel_size=t, sequence_parallel=workload.sequence_parallel, recompute=workload.recompute,
        )
        act = per_layer * len(layers) * estimate_in_flight_microbatches(p, s)
        if s == len(stages) - 1:
            act += estimate_training_logits_bytes(
                model, sequence_length=workload.sequence_length, micro_batch_size=workload.micro_batch_size,
                tensor_parallel_size=t,
            )
        devices.append(DeviceMemory(
            stage=s, layers=(layers.start, layers.stop), weights_bytes=params, activations_bytes=act,
            gradients_bytes=grads, optimizer_bytes=optim, cpu_offload_bytes=cpu,
            overhead_bytes=workload.overhead_factor * params + workload.runtime_reserve_bytes, notes=tuple(notes),
        ))
    return MemoryEstimate(tuple(devices), parallelism)
