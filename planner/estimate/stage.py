"""The memory of one serving stage, computed in one place.

A stage (a tensor-parallel group holding contiguous layers) needs, on each of its devices: its
share of the stage's weights, the KV cache of its layers for every user of the replica, the
prefill activation peak over its layers (plus fp32 logits on the last stage), the seed's O on the
weights and the runtime reserve. StageSizer keeps per-layer sums for each tensor-parallel size so
the candidates can try thousands of layer ranges; `plan memory` asks it too, so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.estimate.activations import estimate_block_peak_elements, estimate_logits_bytes, ACTIVATION_BYTES
from planner.estimate.attention import LayerAttention, build_layer_attention
from planner.estimate.shards import estimate_shard_fraction
from planner.estimate.weights import WeightEstimate
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.workload import Parallelism

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
    overhead_bytes: float = 0.0  # the seed's O on the weights plus the runtime reserve
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


def _prefix(values: list[float]) -> list[float]:
    out = [0.0]
    for value in values:
        out.append(out[-1] + value)
    return out


class _RangeMax:
    """Maximum over any contiguous range in O(1) (a sparse table)."""

    def __init__(self, values: list[float]) -> None:
        self.levels = [list(values)]
        width = 1
        while 2 * width <= len(values):
            prev = self.levels[-1]
            self.levels.append([max(prev[i], prev[i + width]) for i in range(len(prev) - width)])
            width *= 2

    def max(self, start: int, stop: int) -> float:
        if stop <= start:
            return 0.0
        level = (stop - start).bit_length() - 1
        row = self.levels[level]
        return max(row[start], row[stop - (1 << level)])


@dataclass
class _PerRank:
    weights: list[float]  # prefix sums of each block's weight bytes on one rank
    embedding: float
    head: float  # final norm, lm_head and its bias
    attention: tuple[LayerAttention, ...]
    activation_peak: _RangeMax  # elements per token at each block's peak


class StageSizer:
    """Per-layer bytes for each tensor-parallel size, computed once; the one source of a serving
    stage's memory."""

    def __init__(self, model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate, *, context: int,
                 prefill_chunk: int, overhead_factor: float, runtime_reserve_bytes: float,
                 embedding_on_host: bool = False) -> None:
        self.model, self.mix, self.weights = model, mix, weights
        self.embedding_on_host = embedding_on_host  # llama.cpp keeps token_embd in host memory
        self.context, self.prefill_chunk = context, prefill_chunk
        self.overhead_factor, self.runtime_reserve_bytes = overhead_factor, runtime_reserve_bytes
        self._ranks: dict[int, _PerRank] = {}
        self._kv: dict[tuple[int, int], list[float]] = {}

    def _rank(self, tp: int) -> _PerRank:
        if tp not in self._ranks:
            per_layer = [0.0] * self.model.num_layers
            embedding = head = 0.0
            for item in self.weights.tensors:
                size = item.bytes * estimate_shard_fraction(item.tensor, self.model, tp)
                if item.tensor.layer is not None:
                    per_layer[item.tensor.layer] += size
                elif item.tensor.kind == "token_embd":
                    embedding += size
                else:
                    head += size
            peaks = [estimate_block_peak_elements(self.model, i, tp) for i in range(self.model.num_layers)]
            self._ranks[tp] = _PerRank(_prefix(per_layer), embedding, head,
                                       build_layer_attention(self.model, self.mix.kv_cache_dtype, tp), _RangeMax(peaks))
        return self._ranks[tp]

    def attention(self, tp: int) -> tuple[LayerAttention, ...]:
        """The layer descriptions on one rank of a tp-way group."""
        return self._rank(tp).attention

    def _kv_prefix(self, tp: int, users: int) -> list[float]:
        key = (tp, users)
        if key not in self._kv:
            self._kv[key] = _prefix([layer.cache_bytes(self.context, users) for layer in self.attention(tp)])
        return self._kv[key]

    def outer_weight_bytes(self, tp: int, *, first: bool, last: bool) -> float:
        """Embedding (first stage; the last too when tied) and head (last stage) bytes on one rank."""
        rank = self._rank(tp)
        on_device = (first and not self.embedding_on_host) or (last and self.model.tie_word_embeddings)
        return (rank.embedding if on_device else 0.0) + (rank.head if last else 0.0)

    def _parts(self, a: int, b: int, first: bool, last: bool, tp: int, users: int) -> tuple[float, float, float, float]:
        rank = self._rank(tp)
        weights = self.outer_weight_bytes(tp, first=first, last=last) + rank.weights[b] - rank.weights[a]
        kv_prefix = self._kv_prefix(tp, users)
        kv = kv_prefix[b] - kv_prefix[a]
        chunk = min(self.prefill_chunk, self.context * users)
        activations = chunk * rank.activation_peak.max(a, b) * ACTIVATION_BYTES
        if last:
            activations += estimate_logits_bytes(self.model, users)
        return weights, kv, activations, self.overhead_factor * weights + self.runtime_reserve_bytes

    def memory(self, layers: range, *, first: bool, last: bool, tp: int, users: int, stage: int = 0) -> DeviceMemory:
        """What each device of the stage needs."""
        weights, kv, activations, overhead = self._parts(layers.start, layers.stop, first, last, tp, users)
        return DeviceMemory(stage=stage, layers=(layers.start, layers.stop), weights_bytes=weights, kv_cache_bytes=kv,
                            activations_bytes=activations, overhead_bytes=overhead)

    def kv_bytes(self, layers: range, *, tp: int, users: int) -> float:
        """The KV cache of `layers` on one rank for `users` sequences at the context."""
        prefix = self._kv_prefix(tp, users)
        return prefix[layers.stop] - prefix[layers.start]

    def need_bytes(self, layers: range, *, first: bool, last: bool, tp: int, users: int) -> float:
        """memory(...).total_bytes, the same float, without building the record (the fill's inner loop)."""
        weights, kv, activations, overhead = self._parts(layers.start, layers.stop, first, last, tp, users)
        return weights + kv + activations + 0.0 + 0.0 + overhead  # the order of MEMORY_FIELDS
