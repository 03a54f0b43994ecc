"""Per-device memory for serving and training under tensor, pipeline and data parallelism.

How each part divides (Megatron-LM / vLLM conventions):
- weights: projections split across tensor-parallel ranks; KV projections replicate once tp
  exceeds the KV heads; MLA down-projections, norms, biases and routers are replicated; the
  embedding and lm_head are vocabulary-parallel. Pipeline stages own contiguous layers; the first
  holds the embedding, the last the final norm and lm_head (both hold the matrix when tied).
- KV cache: each rank holds its KV heads for its layers, for every user of its replica.
- data parallelism replicates everything in serving; in training ZeRO partitions optimizer
  states (stage 1), gradients (2) and parameters (3) across the data-parallel ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.estimate.activations import (
    estimate_in_flight_microbatches,
    estimate_logits_bytes,
    estimate_prefill_activation_bytes,
    estimate_training_layer_activation_bytes,
    estimate_training_logits_bytes,
)
from planner.estimate.kv_cache import estimate_kv_cache_bytes, estimate_kv_heads_per_rank
from planner.estimate.optimizer import estimate_optimizer_state_bytes
from planner.estimate.parameters import TensorCount
from planner.estimate.weights import TensorBytes, WeightEstimate, estimate_weight_bytes
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.workload import Parallelism, ServeWorkload, TrainWorkload

MEMORY_FIELDS = (
    "weights_bytes", "kv_cache_bytes", "activations_bytes", "gradients_bytes", "optimizer_bytes", "overhead_bytes",
)


@dataclass(frozen=True)
class DeviceMemory:
    """Memory one device of a pipeline stage needs (every tensor-parallel rank of a stage is alike)."""

    stage: int
    layers: tuple[int, int]  # [first, last_exclusive]
    weights_bytes: float = 0.0
    kv_cache_bytes: float = 0.0
    activations_bytes: float = 0.0
    gradients_bytes: float = 0.0
    optimizer_bytes: float = 0.0
    overhead_bytes: float = 0.0
    cpu_offload_bytes: float = 0.0  # model states moved to host memory (not in total_bytes)
    notes: tuple[str, ...] = field(default=())

    @property
    def total_bytes(self) -> float:
        return sum(getattr(self, name) for name in MEMORY_FIELDS)


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory per pipeline stage; `peak` is the device that needs the most."""

    devices: tuple[DeviceMemory, ...]
    parallelism: Parallelism

    @property
    def peak(self) -> DeviceMemory:
        return max(self.devices, key=lambda d: (d.total_bytes, -d.stage))

    @property
    def cluster_bytes(self) -> float:
        """Sum over every device of every replica."""
        p = self.parallelism
        return sum(d.total_bytes for d in self.devices) * p.tensor_parallel_size * p.data_parallel_size


def split_layers(num_layers: int, pipeline_parallel_size: int) -> list[range]:
    """Contiguous layer ranges per stage; the remainder goes to the stages before the last, which
    also carries the lm_head (vLLM get_pp_indices)."""
    if pipeline_parallel_size > num_layers:
        raise ValueError(f"pipeline_parallel_size {pipeline_parallel_size} exceeds the {num_layers} layers")
    counts = [num_layers // pipeline_parallel_size] * pipeline_parallel_size
    for i in range(2, num_layers % pipeline_parallel_size + 2):
        counts[-i] += 1
    out, start = [], 0
    for count in counts:
        out.append(range(start, start + count))
        start += count
    return out


def estimate_shard_fraction(tensor: TensorCount, model: ModelSpec, tensor_parallel_size: int) -> float:
    """Share of a tensor one tensor-parallel rank stores."""
    t = tensor_parallel_size
    if t == 1 or not tensor.is_matrix or tensor.component == "router" or tensor.kind in ("attn_q_a", "attn_kv_a"):
        return 1.0
    if tensor.kind in ("attn_k", "attn_v"):
        return estimate_kv_heads_per_rank(model, t) / model.num_key_value_heads
    return 1.0 / t


def _on_stage(tensor: TensorCount, model: ModelSpec, stage: int, stages: list[range]) -> bool:
    last = len(stages) - 1
    if tensor.layer is not None:
        return tensor.layer in stages[stage]
    if tensor.kind == "token_embd":
        return stage == 0 or (stage == last and model.tie_word_embeddings)
    return stage == last  # final norm, lm_head and its bias


def _stage_tensors(items: tuple[TensorBytes, ...], model: ModelSpec, stage: int, stages: list[range]) -> list[TensorBytes]:
    return [item for item in items if _on_stage(item.tensor, model, stage, stages)]


def estimate_stage_memory(
    model: ModelSpec,
    mix: PrecisionMix,
    weights: WeightEstimate,
    *,
    stage: int,
    layers: range,
    first: bool,
    last: bool,
    tensor_parallel_size: int,
    users: int,
    context: int,
    prefill_chunk: int,
    overhead_factor: float,
    runtime_reserve_bytes: int,
) -> DeviceMemory:
    """Memory one device of a serving stage needs: its share of the stage's weights, the KV cache
    of its layers for every user of the replica, the prefill peak (and logits on the last stage)."""
    t = tensor_parallel_size
    w = 0.0
    for item in weights.tensors:
        tensor = item.tensor
        if tensor.layer is not None:
            on_stage = tensor.layer in layers
        elif tensor.kind == "token_embd":
            on_stage = first or (last and model.tie_word_embeddings)
        else:
            on_stage = last
        if on_stage:
            w += item.bytes * estimate_shard_fraction(tensor, model, t)
    kv = estimate_kv_cache_bytes(model, mix.kv_cache_dtype, context=context, users=users, layers=layers, tensor_parallel_size=t)
    act = estimate_prefill_activation_bytes(model, min(prefill_chunk, context * users), t, layers)
    if last:
        act += estimate_logits_bytes(model, users)
    return DeviceMemory(
        stage=stage, layers=(layers.start, layers.stop), weights_bytes=w, kv_cache_bytes=kv, activations_bytes=act,
        overhead_bytes=overhead_factor * w + runtime_reserve_bytes,
    )


def estimate_serving_memory(
    model: ModelSpec, mix: PrecisionMix, workload: ServeWorkload, parallelism: Parallelism | None = None
) -> MemoryEstimate:
    """Memory per device to serve `workload.users` sequences of `workload.context` tokens."""
    parallelism = parallelism or Parallelism()
    stages = split_layers(model.num_layers, parallelism.pipeline_parallel_size)
    weights = estimate_weight_bytes(model, mix)
    devices = [
        estimate_stage_memory(
            model, mix, weights, stage=s, layers=layers, first=s == 0, last=s == len(stages) - 1,
            tensor_parallel_size=parallelism.tensor_parallel_size, users=workload.users, context=workload.context,
            prefill_chunk=workload.prefill_chunk, overhead_factor=workload.overhead_factor,
            runtime_reserve_bytes=workload.runtime_reserve_bytes,
        )
        for s, layers in enumerate(stages)
    ]
    return MemoryEstimate(tuple(devices), parallelism)


def _lora_adapters(tensors: list[TensorBytes], workload: TrainWorkload) -> list[TensorCount]:
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
    model: ModelSpec, mix: PrecisionMix, workload: TrainWorkload, parallelism: Parallelism | None = None
) -> MemoryEstimate:
    """Memory per device for one training step (mixed precision, ZeRO, offload, LoRA/QLoRA).

    Full training keeps 16-bit weights and gradients plus fp32 master weights and optimizer states:
    2 + 2 + 12 bytes per parameter for Adam (Rajbhandari et al. 2020, ZeRO s3); ZeRO stage 1, 2, 3
    divide the optimizer states, then the gradients, then the parameters by the data-parallel size.
    """
    parallelism = parallelism or Parallelism()
    t, p, dp = parallelism.tensor_parallel_size, parallelism.pipeline_parallel_size, parallelism.data_parallel_size
    zero = workload.zero_stage
    stages = split_layers(model.num_layers, p)
    weight_bytes = 2 if workload.mixed_precision else 4
    master_bytes = 4 if workload.mixed_precision else 0
    all_weights = estimate_weight_bytes(model, mix)
    devices = []
    for s, layers in enumerate(stages):
        tensors = _stage_tensors(all_weights.tensors, model, s, stages)
        notes: list[str] = []
        if workload.lora is None:
            trainable = [(i.tensor, estimate_shard_fraction(i.tensor, model, t)) for i in tensors]
            frozen_bytes = 0.0
        else:
            trainable = [(a, 1.0 / t) for a in _lora_adapters(tensors, workload)]
            frozen_bytes = sum(i.bytes * estimate_shard_fraction(i.tensor, model, t) for i in tensors)
            notes.append(f"frozen base in {mix.weights.id}; adapters of rank {workload.lora.rank}")
        n_trainable = sum(tensor.params * share for tensor, share in trainable)
        params = n_trainable * weight_bytes + frozen_bytes
        grads = n_trainable * weight_bytes
        optim = sum(
            (master_bytes * tensor.params + estimate_optimizer_state_bytes(tensor, workload.optimizer)) * share
            for tensor, share in trainable
        )
        if zero >= 1:
            optim /= dp
        if zero >= 2:
            grads /= dp
        if zero >= 3:
            params /= dp
        cpu = 0.0
        if workload.offload_optimizer:
            cpu += optim
            optim = 0.0
        if workload.offload_params:
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
