"""The engine-neutral accounting `plan memory` uses without --engine, and the part of it other
engines share: exact per-layer KV bytes, a prefill chunk's activation peak plus each user's fp32
logits on the last stage, and a fixed runtime reserve.

Capacity is a share of what the driver reports less memory held elsewhere on a GPU, and the
wired limit on unified memory (estimate/engine.py).
"""

from __future__ import annotations

from planner.estimate.activations import ACTIVATION_BYTES, estimate_logits_bytes
from planner.estimate.attention import LayerAttention
from planner.estimate.engine import estimate_engine_capacity_bytes
from planner.estimate.engines.base import (
    EngineSettings,
    KVCapacity,
    KVLayout,
    exact_layout,
    longest_fitting,
)
from planner.schemas.inventory import Device
from planner.schemas.model import ModelSpec
from planner.schemas.serving import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_PREFILL_CHUNK,
    DEFAULT_RUNTIME_RESERVE_BYTES,
    ServeRequest,
)

DEFAULT_SEQUENCES = 256


class GenericMemory:
    """Exact accounting with a fixed reserve (module docstring)."""

    id = "generic"
    version = "-"
    memory_share = True  # capacity is a share of the device

    def __init__(self, default_fraction: float | None = DEFAULT_GPU_MEMORY_UTILIZATION,
                 default_batch_tokens: int = DEFAULT_PREFILL_CHUNK, default_sequences: int = DEFAULT_SEQUENCES) -> None:
        self.default_fraction = default_fraction
        self.default_batch_tokens = default_batch_tokens
        self.default_sequences = default_sequences

    def settings(self, device: Device | None, request: ServeRequest, *, model: ModelSpec | None = None, tp: int = 1,
                 pp: int = 1) -> EngineSettings:
        fraction = request.gpu_memory_utilization or self.default_fraction
        return EngineSettings(memory_fraction=fraction, batch_tokens=request.prefill_chunk or self.default_batch_tokens,
                              max_sequences=request.max_sequences or self.default_sequences,
                              block_size=request.block_size or 16, cuda_graphs=False,
                              kv_cache_memory_bytes=request.kv_cache_memory_bytes)

    def capacity_bytes(self, device: Device, settings: EngineSettings) -> float:
        return estimate_engine_capacity_bytes(device, settings.memory_fraction or 1.0)

    def activation_bytes(self, model: ModelSpec, peak_elements: float, *, last: bool, users: int, context: int,
                         settings: EngineSettings) -> float:
        """A prefill chunk through the stage's largest block, and every user's fp32 logits on the last."""
        chunk = min(settings.batch_tokens, context * users)
        out = chunk * peak_elements * ACTIVATION_BYTES
        return out + (estimate_logits_bytes(model, users) if last else 0.0)

    def overhead_bytes(self, model: ModelSpec, *, layers: int, tp: int, settings: EngineSettings,
                       reserve_bytes: int | None) -> float:
        return float(DEFAULT_RUNTIME_RESERVE_BYTES if reserve_bytes is None else reserve_bytes)

    def kv_layout(self, model: ModelSpec, attention: tuple[LayerAttention, ...], *, context: int,
                  settings: EngineSettings, pipeline_stages: int) -> KVLayout:
        return exact_layout(attention, context)

    def kv_bytes(self, layout: KVLayout, start: int, stop: int, users: int, settings: EngineSettings) -> float:
        return users * layout.request_bytes(start, stop)

    def capacity(self, model: ModelSpec, layout: KVLayout, stages: list[tuple[range, float]], *, context: int,
                 users: int, settings: EngineSettings) -> KVCapacity:
        """Tokens of one sequence the tightest stage holds (whole pages of block_size), and users
        at the context, each extra user paying for its cache and its logits on the last stage."""
        block = settings.block_size
        last = len(stages) - 1
        tokens, most = [], []
        for k, (layers, free) in enumerate(stages):
            fit = longest_fitting(lambda x, r=layers: layout.sequence_bytes(r.start, r.stop, x), free, 1, 1 << 40)
            tokens.append(max(0, fit) // block * block)
            logits = estimate_logits_bytes(model, 1) if k == last else 0.0
            per_user = layout.request_bytes(layers.start, layers.stop) + logits
            most.append(int((free + logits * users) // per_user) if per_user > 0 else 0)
        per_request = min(tokens, default=0)
        users_fit = max(0, min(most, default=0))
        concurrency = users_fit if per_request else 0
        longest = min(per_request, model.max_context)
        return KVCapacity(kv_cache_tokens=per_request, max_concurrency=float(concurrency), max_users=users_fit,
                          longest_sequence_tokens=longest)

