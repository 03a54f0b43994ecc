"""llama.cpp's memory accounting (llama-server).

Per device, llama.cpp allocates three things (src/llama-context.cpp, src/llama-kv-cache.cpp,
ggml-backend scheduler): the model buffer (the layers it holds; token_embd stays in host memory),
the KV buffer of its layers, and a compute buffer sized by reserving the worst-case graph of one
ubatch (n_ubatch tokens, 512 by default). Nothing is a share of the device: with the layer split
given (-ngl, -ts), --fit leaves placement alone, and a device either holds its buffers or the
load fails.

Context: -c is the total over slots; the server's default unified cache lets every slot use all
of it, padded to 256 cells (src/llama-context.cpp: n_ctx = GGML_PAD(n_ctx, 256)). Sliding-window
layers keep their own smaller cache of n_swa x slots + n_ubatch cells
(src/llama-kv-cache-iswa.cpp), padded the same way.
"""

from __future__ import annotations

from planner.estimate.attention import LayerAttention
from planner.estimate.engines.base import (
    EngineSettings,
    KVCapacity,
    KVLayout,
    exact_layout,
    longest_fitting,
)
from planner.estimate.engines.vllm import cuda_total_bytes
from planner.schemas.engine import EngineMemory as EngineMemoryProfile
from planner.schemas.inventory import Device
from planner.schemas.model import ModelSpec
from planner.schemas.serving import ServeRequest
from planner.units import GiB

UBATCH = 512  # --ubatch-size default (common/common.h n_ubatch)
SLOTS = 4  # llama-server -np default: 4 slots with a unified cache (tools/server/server.cpp)
CELL_PAD = 256  # n_ctx and the sliding cache are padded to 256 cells
# What a CUDA or ROCm process holds before llama.cpp allocates (the CUDA context and cuBLAS).
CONTEXT_BYTES = int(0.3 * GiB)
COMPUTE_BYTES = 4  # ggml computes activations in fp32


def pad(n: int, to: int = CELL_PAD) -> int:
    return -(-n // to) * to


def feed_forward_width(model: ModelSpec) -> int:
    """Feed-forward activations per token in the widest block: the dense MLP, or the experts a
    token uses plus the shared experts."""
    widths = [model.intermediate_size] if any(not model.is_moe_layer(i) for i in range(model.num_layers)) else []
    if model.moe is not None:
        widths.append(model.moe.experts_per_token * model.moe.expert_intermediate_size
                      + model.moe.shared_expert_intermediate_size)
    return max(widths or [model.intermediate_size])


class LlamaCppMemory:
    """llama.cpp's buffers per device (module docstring)."""

    id = "llama.cpp"

    def __init__(self, version: str, memory: EngineMemoryProfile) -> None:
        self.version = version
        if memory.prefill_chunk_tokens is None or memory.max_sequences is None:
            raise ValueError("llama.cpp's profile gives no ubatch or slot count")
        self.ubatch, self.slots = memory.prefill_chunk_tokens, memory.max_sequences  # -ub 512, -np 4

    def settings(self, device: Device | None, request: ServeRequest, *, model: ModelSpec | None = None, tp: int = 1,
                 pp: int = 1) -> EngineSettings:
        return EngineSettings(memory_fraction=None, batch_tokens=request.prefill_chunk or self.ubatch,
                              max_sequences=request.max_sequences or self.slots, block_size=1, cuda_graphs=False,
                              kv_cache_memory_bytes=None)

    def capacity_bytes(self, device: Device, settings: EngineSettings) -> float:
        """A GPU's free memory (what the driver reports less other work and the CUDA context);
        on unified memory, what the GPU may wire."""
        if device.spec.unified_memory:
            return float(device.usable_bytes)
        held = device.memory_bytes - device.usable_bytes
        return cuda_total_bytes(device.spec, device.memory_bytes) - held - CONTEXT_BYTES

    def activation_bytes(self, model: ModelSpec, peak_elements: float, *, last: bool, users: int, context: int,
                         settings: EngineSettings) -> float:
        """The compute buffer ggml reserves for one ubatch in fp32, with flash attention (llama-server's
        -fa auto turns it on for CUDA and Metal): a block's feed-forward pair and two hidden
        states per token; on the device with the output layer, the ubatch's logits and hidden
        state if larger. Logs: 300.75 MiB for Qwen2.5-3B at ubatch 512 = 512 x (151,936 + 2,048)
        x 4 B (Vulkan and Metal, 2,048 and 4,096 context), 66.50 MiB for TinyLlama, 307.00 MiB for
        Qwen2.5-32B, 1,031 MiB for gemma-4-E2B at ubatch 1,024; 146 MiB on the layer-only GPUs
        of a 70B split (512 x (2 x 28,672 + 2 x 8,192) x 4 B = 144 MiB)."""
        tokens = settings.batch_tokens
        layers = tokens * (2 * feed_forward_width(model) + 2 * model.hidden_size) * COMPUTE_BYTES
        if not last:
            return layers
        return max(layers, tokens * (model.vocab_size + model.hidden_size) * COMPUTE_BYTES)

    def overhead_bytes(self, model: ModelSpec, *, layers: int, tp: int, settings: EngineSettings,
                       reserve_bytes: int | None) -> float:
        return float(reserve_bytes or 0)

    def kv_layout(self, model: ModelSpec, attention: tuple[LayerAttention, ...], *, context: int,
                  settings: EngineSettings, pipeline_stages: int) -> KVLayout:
        return exact_layout(attention, context)

    def cells(self, layout: KVLayout, group: int, users: int, settings: EngineSettings) -> int:
        """Cells of one group for `users` slots of the context: -c = users x context, padded."""
        total = pad(users * layout.context)
        cap = layout.caps[group]
        if cap is None:
            return total
        return pad(min(total, cap * users + settings.batch_tokens))

    def kv_bytes(self, layout: KVLayout, start: int, stop: int, users: int, settings: EngineSettings) -> float:
        return sum(layout.group_token_bytes(g, start, stop) * self.cells(layout, g, users, settings)
                   for g in range(len(layout.groups)))

    def capacity(self, model: ModelSpec, layout: KVLayout, stages: list[tuple[range, float]], *, context: int,
                 users: int, settings: EngineSettings) -> KVCapacity:
        """Cells of the largest -c every device holds (what llama.cpp prints as n_ctx), requests
        of the context it holds, and the longest single request (one slot)."""
        def fits(cells: int) -> bool:
            return all(self._bytes_at(layout, r, cells, 1, settings) <= free for r, free in stages)

        most = longest_fitting(lambda c: 0.0 if fits(c * CELL_PAD) else 1.0, 0.5, 1, 1 << 22)
        cells = max(0, most) * CELL_PAD
        concurrency = cells / context if context else 0.0
        users_fit = 0
        for n in range(max(1, int(concurrency)), 0, -1):
            if all(self.kv_bytes(layout, r.start, r.stop, n, settings) <= free for r, free in stages):
                users_fit = n
                break
        return KVCapacity(kv_cache_tokens=cells, max_concurrency=concurrency, max_users=users_fit,
                          longest_sequence_tokens=min(cells, model.max_context))

    def _bytes_at(self, layout: KVLayout, layers: range, cells: int, slots: int, settings: EngineSettings) -> float:
        out = 0.0
        for g, cap in enumerate(layout.caps):
            held = cells if cap is None else pad(min(cells, cap * slots + settings.batch_tokens))
            out += layout.group_token_bytes(g, layers.start, layers.stop) * held
        return out


def cells_for(users: int, context: int) -> int:
    """-c for `users` slots of `context` tokens (the server's default unified cache)."""
    return pad(users * context)

