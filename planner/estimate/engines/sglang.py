"""SGLang's memory accounting.

SGLang splits a GPU into a static part, mem_fraction_static of it, for the weights and the token
pool, and the rest for activations and CUDA graphs (sglang/srt/arg_groups/memory_hook.py
handle_gpu_memory_settings). The pool gets what the loaded weights leave of the static part:
rest = free after loading - free before loading x (1 - mem_fraction_static)
(mem_cache/kv_cache_configurator.py _profile_available_bytes), divided by the bytes one token
takes over the rank's layers, and every pipeline rank gets the smallest rank's token count.

Defaults by the GPU's memory (memory_hook.py): chunked_prefill_size 2,048 below 20 GiB, 4,096
below 60, 8,192 below 160, 16,384 above; decode CUDA-graph batch 8 / 48 (160 from tp 4) / 32 (160)
/ 256 (512) / 256 (512) / 512 in the same tiers; and
mem_fraction_static = (M - reserved) / M with reserved = 512 + 1.5 x max(chunk, 2048)
+ 1024 x tp x pp / 8 + 2 x graph batch + 8 per prefill-graph size (1,536 for MLA) MiB, at least
10 GiB on GPUs over 60 GiB.

Sliding-window models get two pools, the sliding one holding swa_full_tokens_ratio (0.8) of the
full pool's tokens (server_args.swa_full_tokens_ratio).
"""

from __future__ import annotations

import math

from planner.estimate.attention import LayerAttention
from planner.estimate.engines.base import (
    EngineSettings,
    KVCapacity,
    KVLayout,
    exact_layout,
    longest_fitting,
)
from planner.estimate.engines.vllm import cuda_total_bytes
from planner.schemas.inventory import Device
from planner.schemas.model import ModelSpec
from planner.schemas.serving import ServeRequest
from planner.units import GiB, MiB

SWA_FULL_TOKENS_RATIO = 0.8
# Memory in use when SGLang measures "free before loading" (CUDA context, NCCL, cuBLAS).
CONTEXT_BYTES = int(0.5 * GiB)
# (upper bound of the tier in GiB, chunked_prefill_size, decode graph batch below tp 4, from tp 4)
TIERS = ((20, 2048, 8, 8), (35, 4096, 48, 160), (60, 4096, 32, 160), (90, 8192, 256, 512),
         (160, 8192, 256, 512), (math.inf, 16384, 512, 512))


def prefill_graph_sizes(max_tokens: int) -> int:
    """How many prefill CUDA graphs SGLang captures up to `max_tokens` (arg_groups/cuda_graph_hook.py
    generate_prefill_cuda_graph_batch_sizes; breakable prefill graphs are the default on CUDA)."""
    sizes = [*range(4, 33, 4), *range(48, 257, 16), *range(288, 513, 32), *range(576, 1025, 64),
             *range(1280, 4097, 256), *range(4608, max_tokens + 1, 512)]
    return sum(1 for s in sizes if s <= max_tokens)


def mem_fraction_static(gpu_mib: float, chunk: int, graph_batch: int, tp: int, pp: int, mla: bool) -> float:
    """SGLang's default mem_fraction_static (module docstring)."""
    reserved = 512 + max(chunk, 2048) * 1.5 + tp * pp / 8 * 1024 + graph_batch * 2
    reserved += 1.5 * 1024 if mla else prefill_graph_sizes(chunk) * 8
    if gpu_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_mib - reserved) / gpu_mib, 3)


class SglangMemory:
    """SGLang's static fraction and token pool (module docstring)."""

    id = "sglang"

    def __init__(self, version: str) -> None:
        self.version = version

    def settings(self, device: Device | None, request: ServeRequest, *, model: ModelSpec | None = None, tp: int = 1,
                 pp: int = 1) -> EngineSettings:
        total = cuda_total_bytes(device.spec, device.memory_bytes) if device is not None else None
        if total is None:
            chunk, batch = 4096, 160
        else:
            gib = total / GiB
            _, chunk, small, large = next(t for t in TIERS if gib < t[0])
            batch = small if tp < 4 else large
        chunk = request.prefill_chunk or chunk
        fraction = request.gpu_memory_utilization
        if fraction is None:
            mla = model is not None and model.mla is not None
            fraction = 0.95 if total is None else mem_fraction_static(total / MiB, chunk, batch, tp, pp, mla)
        return EngineSettings(memory_fraction=fraction, batch_tokens=chunk, max_sequences=request.max_sequences or batch,
                              block_size=request.block_size or 1, cuda_graphs=True,
                              kv_cache_memory_bytes=request.kv_cache_memory_bytes)

    def capacity_bytes(self, device: Device, settings: EngineSettings) -> float:
        """The static part of what was free before loading: weights and the token pool."""
        assert settings.memory_fraction is not None
        free = cuda_total_bytes(device.spec, device.memory_bytes) - CONTEXT_BYTES - (device.memory_bytes - device.usable_bytes)
        return max(0.0, free) * settings.memory_fraction

    def activation_bytes(self, model: ModelSpec, peak_elements: float, *, last: bool, users: int, context: int,
                         settings: EngineSettings) -> float:
        """Activations live in the part mem_fraction_static leaves out."""
        return 0.0

    def overhead_bytes(self, model: ModelSpec, *, layers: int, tp: int, settings: EngineSettings,
                       reserve_bytes: int | None) -> float:
        return float(reserve_bytes or 0)

    def kv_layout(self, model: ModelSpec, attention: tuple[LayerAttention, ...], *, context: int,
                  settings: EngineSettings, pipeline_stages: int) -> KVLayout:
        return exact_layout(attention, context)

    def _cells(self, layout: KVLayout, start: int, stop: int) -> tuple[float, float, int | None]:
        """Bytes per token of the full and the sliding layers on [start, stop), and the window."""
        full = swa = 0.0
        window = None
        for g, cap in enumerate(layout.caps):
            share = layout.group_token_bytes(g, start, stop)
            if cap is None:
                full += share
            else:
                swa += share
                window = cap if window is None else max(window, cap)
        return full, swa, window

    def pool_bytes_per_full_token(self, layout: KVLayout, start: int, stop: int) -> float:
        full, swa, window = self._cells(layout, start, stop)
        return full + (SWA_FULL_TOKENS_RATIO * swa if window is not None else 0.0)

    def kv_bytes(self, layout: KVLayout, start: int, stop: int, users: int, settings: EngineSettings) -> float:
        """The pool that holds `users` requests in both the full and the sliding pool."""
        _, _, window = self._cells(layout, start, stop)
        context = layout.context
        full_tokens = users * context
        if window is not None:
            full_tokens = max(full_tokens, users * min(window, context) / SWA_FULL_TOKENS_RATIO)
        return full_tokens * self.pool_bytes_per_full_token(layout, start, stop)

    def capacity(self, model: ModelSpec, layout: KVLayout, stages: list[tuple[range, float]], *, context: int,
                 users: int, settings: EngineSettings) -> KVCapacity:
        """max_total_num_tokens (the smallest pipeline rank's), requests of the context it holds,
        and the longest single request."""
        tokens = min((int(free // cell) if (cell := self.pool_bytes_per_full_token(layout, r.start, r.stop)) > 0 else 0
                      for r, free in stages), default=0)
        _, _, window = self._cells(layout, stages[0][0].start, stages[-1][0].stop) if stages else (0, 0, None)
        per_request = context
        if window is not None:
            per_request = max(context, min(window, context) / SWA_FULL_TOKENS_RATIO)
        concurrency = tokens / per_request if per_request else 0.0
        longest = longest_fitting(lambda x: x if window is None else max(x, min(window, x) / SWA_FULL_TOKENS_RATIO),
                                  tokens, 1, model.max_context)
        return KVCapacity(kv_cache_tokens=tokens, max_concurrency=concurrency, max_users=int(concurrency + 1e-9),
                          longest_sequence_tokens=max(0, longest))
