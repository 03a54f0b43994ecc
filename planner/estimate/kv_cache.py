"""KV-cache bytes: the seed's formula generalised to GQA/MQA, MLA latents, sliding windows,
chunked local attention and KV dtypes, summed over the layer descriptions of estimate/attention.py.

Seed guide: KV = context x layers x kv_heads x head_dim x 2 (K and V) x 2 (bytes) x users.
"""

from __future__ import annotations

import math

from planner.estimate.attention import LayerAttention, build_layer_attention, estimate_kv_heads_per_rank
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionFormat

__all__ = [
    "estimate_kv_heads_per_rank", "estimate_kv_bytes_per_token_layer", "estimate_kv_bytes_per_token",
    "estimate_kv_cache_bytes", "estimate_kv_capacity_tokens", "estimate_context_fitting",
]


def estimate_kv_bytes_per_token_layer(
    model: ModelSpec, kv_dtype: PrecisionFormat, tensor_parallel_size: int = 1
) -> float:
    """Bytes one token adds to one layer's cache on one tensor-parallel rank."""
    return build_layer_attention(model, kv_dtype, tensor_parallel_size)[0].bytes_per_token


def estimate_kv_bytes_per_token(model: ModelSpec, kv_dtype: PrecisionFormat, tensor_parallel_size: int = 1) -> float:
    """Bytes per token over all layers for one sequence, while the context is within every window."""
    return sum(layer.bytes_per_token for layer in build_layer_attention(model, kv_dtype, tensor_parallel_size))


def estimate_kv_cache_bytes(
    model: ModelSpec,
    kv_dtype: PrecisionFormat,
    *,
    context: int,
    users: int,
    layers: range | None = None,
    tensor_parallel_size: int = 1,
) -> float:
    """KV-cache bytes on one rank for `users` sequences of `context` tokens over `layers`."""
    described = build_layer_attention(model, kv_dtype, tensor_parallel_size)
    layers = layers if layers is not None else range(model.num_layers)
    return sum(described[i].cache_bytes(context, users) for i in layers)


def estimate_context_fitting(layers: list[LayerAttention], free_bytes: float, max_context: int) -> int:
    """The longest context one sequence can hold in `free_bytes` over `layers` (not capped at the
    model's maximum, as vLLM reports its cache size). Each layer holds min(context, its window)
    tokens, so the cost is piecewise linear in the context."""
    if free_bytes <= 0 or not layers:
        return 0
    breaks = sorted({layer.window for layer in layers if layer.window is not None})
    growing = sum(layer.bytes_per_token for layer in layers)  # bytes per extra token, over growing layers
    spent, previous = 0.0, 0
    for window in breaks:
        step = (window - previous) * growing
        if spent + step >= free_bytes:
            break
        spent += step
        previous = window
        growing -= sum(layer.bytes_per_token for layer in layers if layer.window == window)
        if growing <= 0:
            return max_context  # every layer is windowed: any context the model supports fits
    return int(previous + (free_bytes - spent) / growing)


def estimate_kv_capacity_tokens(
    model: ModelSpec, kv_dtype: PrecisionFormat, free_bytes: float, *, layers: range | None = None,
    tensor_parallel_size: int = 1, block_size: int = 16,
) -> int:
    """Tokens of full-attention context that `free_bytes` holds, in whole pages of `block_size` tokens
    as vLLM allocates them (blocks = floor(free / page bytes))."""
    described = build_layer_attention(model, kv_dtype, tensor_parallel_size)
    layers = layers if layers is not None else range(model.num_layers)
    page = block_size * sum(described[i].bytes_per_token for i in layers)
    if page <= 0 or free_bytes <= 0:
        return 0
    return int(math.floor(free_bytes / page)) * block_size
