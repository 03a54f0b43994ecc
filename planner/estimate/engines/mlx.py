"""MLX's memory accounting (mlx-lm's server, and exo, which runs mlx-lm per machine).

Metal may keep resident what macOS lets the GPU wire (iogpu.wired_limit_mb; by default about
two thirds to three quarters of unified memory): the inventory's usable memory. mlx-lm holds the
weights of its layers, a KV cache that grows in steps of 256 tokens per sequence
(mlx_lm/models/cache.py KVCache.step) and, for sliding-window layers, a rotating cache of the
window (RotatingKVCache), and the activations of prefill steps for several prompts at once plus
each sequence's fp32 logits: the step, the prompts and the decode batch are the profile's
(mlx-lm's server: 2,048 tokens, 8 prompts, 32 sequences; exo: 4,096-token steps).
"""

from __future__ import annotations

from planner.estimate.activations import ACTIVATION_BYTES, estimate_logits_bytes
from planner.estimate.attention import LayerAttention
from planner.estimate.engines.base import (
    EngineSettings,
    KVCapacity,
    KVLayout,
    longest_fitting,
)
from planner.schemas.engine import EngineMemory as EngineMemoryProfile
from planner.schemas.inventory import Device
from planner.schemas.model import ModelSpec
from planner.schemas.serving import ServeRequest

CACHE_STEP = 256  # KVCache.step: the cache grows in steps of 256 tokens


class MlxMemory:
    """Wired unified memory (module docstring)."""

    def __init__(self, engine_id: str, version: str, memory: EngineMemoryProfile) -> None:
        self.id, self.version = engine_id, version
        if memory.prefill_chunk_tokens is None or memory.max_sequences is None or memory.prefill_sequences is None:
            raise ValueError(f"{engine_id}'s profile gives no prefill step, decode batch or prefill batch")
        self.prefill_step, self.sequences = memory.prefill_chunk_tokens, memory.max_sequences
        self.prompts = memory.prefill_sequences

    def settings(self, device: Device | None, request: ServeRequest, *, model: ModelSpec | None = None, tp: int = 1,
                 pp: int = 1) -> EngineSettings:
        return EngineSettings(memory_fraction=None, batch_tokens=request.prefill_chunk or self.prefill_step,
                              max_sequences=request.max_sequences or self.sequences, block_size=CACHE_STEP,
                              cuda_graphs=False, kv_cache_memory_bytes=None)

    def capacity_bytes(self, device: Device, settings: EngineSettings) -> float:
        return float(device.usable_bytes)

    def activation_bytes(self, model: ModelSpec, peak_elements: float, *, last: bool, users: int, context: int,
                         settings: EngineSettings) -> float:
        prompts = min(self.prompts, users)
        out = prompts * min(settings.batch_tokens, context) * peak_elements * ACTIVATION_BYTES
        return out + (estimate_logits_bytes(model, users) if last else 0.0)

    def overhead_bytes(self, model: ModelSpec, *, layers: int, tp: int, settings: EngineSettings,
                       reserve_bytes: int | None) -> float:
        return float(reserve_bytes or 0)

    def kv_layout(self, model: ModelSpec, attention: tuple[LayerAttention, ...], *, context: int,
                  settings: EngineSettings, pipeline_stages: int) -> KVLayout:
        by_cap: dict[int | None, list[int]] = {}
        for i, layer in enumerate(attention):
            by_cap.setdefault(layer.window, []).append(i)
        caps = list(by_cap)
        return KVLayout(attention, [by_cap[c] for c in caps], caps, [False] * len(caps), context=context,
                        block_size=settings.block_size, pooled=False)

    def kv_bytes(self, layout: KVLayout, start: int, stop: int, users: int, settings: EngineSettings) -> float:
        """Each sequence's cache in whole 256-token steps (a window is kept whole)."""
        step = layout.block_size
        out = 0.0
        for g, cap in enumerate(layout.caps):
            tokens = layout.context if cap is None else min(cap, layout.context)
            held = tokens if cap is not None else -(-tokens // step) * step
            out += layout.group_token_bytes(g, start, stop) * held
        return users * out

    def capacity(self, model: ModelSpec, layout: KVLayout, stages: list[tuple[range, float]], *, context: int,
                 users: int, settings: EngineSettings) -> KVCapacity:
        """MLX reports no cache size; the planner's: tokens of one sequence the tightest machine holds."""
        last = len(stages) - 1

        def need(tokens: int, k: int, layers: range) -> float:
            logits = estimate_logits_bytes(model, 1) if k == last else 0.0
            return layout.sequence_bytes(layers.start, layers.stop, tokens) + logits

        longest = min((longest_fitting(lambda x, k=k, r=r: need(x, k, r), free, 1, 1 << 40) for k, (r, free) in enumerate(stages)),
                      default=0)
        per_user = [self.kv_bytes(layout, r.start, r.stop, 1, settings)
                    + (estimate_logits_bytes(model, 1) if k == last else 0.0) for k, (r, _) in enumerate(stages)]
        fit = min((int((free + (estimate_logits_bytes(model, users) if k == last else 0.0)) // p) if p > 0 else 0
                   for k, ((_, free), p) in enumerate(zip(stages, per_user))), default=0)
        tokens = max(0, longest)
        return KVCapacity(kv_cache_tokens=tokens, max_concurrency=tokens / context if context else 0.0,
                          max_users=max(0, fit), longest_sequence_tokens=min(tokens, model.max_context))
