"""The memory of one serving stage, computed in one place.

A stage (a tensor-parallel group holding contiguous layers) needs, on each of its devices: its
share of the stage's weights, the KV cache of its layers for every user of the replica as its
engine lays it out, the engine's activation peak over its layers, and the engine's overhead plus
the seed's O on the weights. StageSizer keeps per-layer sums for each tensor-parallel size so the
candidates can try thousands of layer ranges; `plan memory` asks it too, so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.estimate.activations import estimate_block_peak_elements
from planner.estimate.attention import LayerAttention, build_layer_attention
from planner.estimate.engines.base import EngineMemory, EngineSettings, KVLayout
from planner.estimate.shards import estimate_shard_fraction
from planner.estimate.engine_support import family_of
from planner.estimate.weights import TensorBytes, WeightEstimate
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.workload import Parallelism

def is_padded_expert(item: TensorBytes, mix: PrecisionMix) -> bool:
    """An MXFP4 routed-expert matrix, which vLLM's kernels pad (estimate/engines/vllm.py)."""
    return item.tensor.component == "experts" and item.tensor.is_matrix and family_of(item.format_id, mix) == "mxfp4"


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
    overhead_bytes: float = 0.0  # the engine's own (non-torch, CUDA graphs, reserve) plus the seed's O on the weights
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
    settings: EngineSettings | None = None  # serving: what the engine runs with

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
    stage's memory. The weights are the planner's exact accounting; everything else (activation
    peak, overhead, the cache's layout) is the engine's own (estimate/engines/)."""

    def __init__(self, model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate, *, context: int,
                 engine: EngineMemory, overhead_factor: float, runtime_reserve_bytes: int | None,
                 embedding_on_host: bool = False) -> None:
        self.model, self.mix, self.weights, self.engine = model, mix, weights, engine
        self.embedding_on_host = embedding_on_host  # llama.cpp keeps token_embd in host memory
        self.context = context
        self.overhead_factor, self.runtime_reserve_bytes = overhead_factor, runtime_reserve_bytes
        self._ranks: dict[tuple[int, float], _PerRank] = {}
        self._layouts: dict[tuple[int, EngineSettings, int], KVLayout] = {}
        self._activations: dict[tuple, float] = {}
        self._overheads: dict[tuple, float] = {}

    def _rank(self, tp: int, expert_factor: float = 1.0) -> _PerRank:
        key = (tp, expert_factor)
        if key not in self._ranks:
            per_layer = [0.0] * self.model.num_layers
            embedding = head = 0.0
            for item in self.weights.tensors:
                size = item.bytes * estimate_shard_fraction(item.tensor, self.model, tp)
                if expert_factor != 1.0 and is_padded_expert(item, self.mix):
                    size *= expert_factor
                if item.tensor.layer is not None:
                    per_layer[item.tensor.layer] += size
                elif item.tensor.kind == "token_embd":
                    embedding += size
                else:
                    head += size
            peaks = [estimate_block_peak_elements(self.model, i, tp) for i in range(self.model.num_layers)]
            self._ranks[key] = _PerRank(_prefix(per_layer), embedding, head,
                                        build_layer_attention(self.model, self.mix.kv_cache_dtype, tp), _RangeMax(peaks))
        return self._ranks[key]

    def attention(self, tp: int) -> tuple[LayerAttention, ...]:
        """The layer descriptions on one rank of a tp-way group."""
        return self._rank(tp).attention

    def layout(self, tp: int, settings: EngineSettings, pipeline_stages: int = 1) -> KVLayout:
        """The engine's cache layout on one rank of a tp-way group at the context."""
        key = (tp, settings, pipeline_stages)
        if key not in self._layouts:
            self._layouts[key] = self.engine.kv_layout(self.model, self.attention(tp), context=self.context,
                                                       settings=settings, pipeline_stages=pipeline_stages)
        return self._layouts[key]

    def layer_weight_bytes(self, layers: range, tp: int = 1) -> float:
        """The weights of `layers` on one rank of a tp-way group."""
        rank = self._rank(tp)
        return rank.weights[layers.stop] - rank.weights[layers.start] if layers else 0.0

    def head_bytes(self, tp: int = 1) -> float:
        """The final norm, lm_head and its bias on one rank (a tied head reuses the embedding)."""
        return self._rank(tp).head

    def embedding_bytes(self, tp: int = 1) -> float:
        """The token embedding on one rank."""
        return self._rank(tp).embedding

    def outer_weight_bytes(self, tp: int, *, first: bool, last: bool) -> float:
        """Embedding (first stage; the last too when tied) and head (last stage) bytes on one rank."""
        rank = self._rank(tp)
        on_device = (first and not self.embedding_on_host) or (last and self.model.tie_word_embeddings)
        return (rank.embedding if on_device else 0.0) + (rank.head if last else 0.0)

    def _parts(self, a: int, b: int, first: bool, last: bool, tp: int, users: int, settings: EngineSettings,
               pipeline_stages: int) -> tuple[float, float, float, float]:
        rank = self._rank(tp, settings.mxfp4_expert_factor)
        weights = self.outer_weight_bytes(tp, first=first, last=last) + rank.weights[b] - rank.weights[a]
        kv = self.engine.kv_bytes(self.layout(tp, settings, pipeline_stages), a, b, users, settings)
        peak = rank.activation_peak.max(a, b)
        key = (peak, last, users, settings)
        activations = self._activations.get(key)
        if activations is None:
            activations = self._activations[key] = self.engine.activation_bytes(
                self.model, peak, last=last, users=users, context=self.context, settings=settings)
        key = (b - a, tp, settings)
        engine_overhead = self._overheads.get(key)
        if engine_overhead is None:  # the engines' overheads depend on the layer count, not on which layers
            engine_overhead = self._overheads[key] = self.engine.overhead_bytes(
                self.model, layers=b - a, tp=tp, settings=settings, reserve_bytes=self.runtime_reserve_bytes)
        return weights, kv, activations, self.overhead_factor * weights + engine_overhead

    def memory(self, layers: range, *, first: bool, last: bool, tp: int, users: int, settings: EngineSettings,
               pipeline_stages: int = 1, stage: int = 0) -> DeviceMemory:
        """What each device of the stage needs."""
        weights, kv, activations, overhead = self._parts(layers.start, layers.stop, first, last, tp, users, settings,
                                                         pipeline_stages)
        return DeviceMemory(stage=stage, layers=(layers.start, layers.stop), weights_bytes=weights, kv_cache_bytes=kv,
                            activations_bytes=activations, overhead_bytes=overhead)

    def kv_bytes(self, layers: range, *, tp: int, users: int, settings: EngineSettings, pipeline_stages: int = 1) -> float:
        """The KV cache of `layers` on one rank for `users` sequences at the context."""
        return self.engine.kv_bytes(self.layout(tp, settings, pipeline_stages), layers.start, layers.stop, users, settings)

    def need_bytes(self, layers: range, *, first: bool, last: bool, tp: int, users: int, settings: EngineSettings,
                   pipeline_stages: int = 1) -> float:
        """memory(...).total_bytes, the same float, without building the record (the fill's inner loop)."""
        weights, kv, activations, overhead = self._parts(layers.start, layers.stop, first, last, tp, users, settings,
                                                         pipeline_stages)
        return weights + kv + activations + 0.0 + 0.0 + overhead  # the order of MEMORY_FIELDS
