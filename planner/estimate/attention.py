"""One description per attention layer, in the shape of vLLM's KVCacheSpec family
(vllm/v1/kv_cache_interface.py: FullAttentionSpec, SlidingWindowSpec, ChunkedLocalAttentionSpec,
MLAAttentionSpec): the bytes one token adds to the layer's cache on one tensor-parallel rank, and
the most tokens the layer holds for one sequence. Memory, KV capacity and speed all read it.

State-space and linear-attention layers (Mamba, gated delta nets) keep a fixed-size state instead
of a cache; the planner does not model them, and the config loader refuses such models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionFormat

AttentionKind = Literal["full", "sliding", "chunked", "mla"]


@dataclass(frozen=True)
class LayerAttention:
    """The cache of one attention layer on one tensor-parallel rank."""

    kind: AttentionKind
    bytes_per_token: float  # K and V (or the MLA latent) of one token, this rank's heads
    window: int | None  # sliding window or attention chunk: the most tokens held; None: the context
    query_heads: float  # query heads on this rank (attention FLOPs)
    head_dim: int

    def held_tokens(self, context: int) -> int:
        """Tokens the layer keeps for a sequence of `context` tokens."""
        return context if self.window is None else min(context, self.window)

    def cache_bytes(self, context: int, users: int = 1) -> float:
        """Bytes of cache for `users` sequences of `context` tokens."""
        return users * self.bytes_per_token * self.held_tokens(context)

    def attention_flops_per_token(self, context: int) -> float:
        """Score and value products of one new token over the held tokens: 2 x 2 x heads x head_dim."""
        return 4 * self.query_heads * self.head_dim * self.held_tokens(context)


def estimate_kv_heads_per_rank(model: ModelSpec, tensor_parallel_size: int) -> int:
    """KV heads each tensor-parallel rank stores; vLLM replicates heads when tp > kv_heads."""
    return max(1, math.ceil(model.num_key_value_heads / tensor_parallel_size))


def _bytes_per_token(model: ModelSpec, kv_dtype: PrecisionFormat, tensor_parallel_size: int) -> float:
    if model.mla is not None:
        # MLA caches the compressed latent and the shared rotary key once per token, and vLLM keeps
        # a full copy on every rank (MLAAttentionSpec has no head split).
        width = model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
        return width * kv_dtype.bits_per_weight(head_dim=width) / 8.0
    heads = estimate_kv_heads_per_rank(model, tensor_parallel_size)
    return 2 * heads * model.head_dim * kv_dtype.bits_per_weight(head_dim=model.head_dim) / 8.0


def build_layer_attention(
    model: ModelSpec, kv_dtype: PrecisionFormat, tensor_parallel_size: int = 1
) -> tuple[LayerAttention, ...]:
    """Every layer's attention, in order."""
    per_token = _bytes_per_token(model, kv_dtype, tensor_parallel_size)
    heads = model.num_attention_heads / tensor_parallel_size
    out = []
    for index in range(model.num_layers):
        kind = model.layer_type(index)
        if model.mla is not None:
            out.append(LayerAttention("mla", per_token, None, heads, model.head_dim))
        elif kind == "sliding":
            out.append(LayerAttention("sliding", per_token, model.sliding_window, heads, model.head_dim))
        elif kind == "chunked":
            out.append(LayerAttention("chunked", per_token, model.attention_chunk_size, heads, model.head_dim))
        else:
            out.append(LayerAttention("full", per_token, None, heads, model.head_dim))
    return tuple(out)
