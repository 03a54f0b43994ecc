"""KV-cache bytes: the seed's formula generalised to GQA/MQA, MLA latents, sliding windows and KV dtypes.

Seed guide: KV = context x layers x kv_heads x head_dim x 2 (K and V) x 2 (bytes) x users.
"""

from __future__ import annotations

import math

from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionFormat


def estimate_kv_heads_per_rank(model: ModelSpec, tensor_parallel_size: int) -> int:
    """KV heads each tensor-parallel rank stores; vLLM replicates heads when tp > kv_heads."""
    return max(1, math.ceil(model.num_key_value_heads / tensor_parallel_size))


def estimate_kv_bytes_per_token_layer(
    model: ModelSpec, kv_dtype: PrecisionFormat, tensor_parallel_size: int = 1
) -> float:
    """Bytes one token adds to one layer's cache on one tensor-parallel rank."""
    if model.mla is not None:
        # DeepSeek MLA caches the compressed latent and the shared rotary key, once per token;
        # vLLM keeps a full copy on every rank (vllm/v1/kv_cache_interface.py MLAAttentionSpec).
        width = model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
        return width * kv_dtype.bits_per_weight(head_dim=width) / 8.0
    heads = estimate_kv_heads_per_rank(model, tensor_parallel_size)
    return 2 * heads * model.head_dim * kv_dtype.bits_per_weight(head_dim=model.head_dim) / 8.0


def estimate_cached_tokens(model: ModelSpec, layer: int, context: int) -> int:
    """Tokens layer `layer` keeps for a sequence of `context` tokens (a sliding layer stops at its window)."""
    if model.layer_type(layer) == "sliding" and model.sliding_window:
        return min(context, model.sliding_window)
    return context


def estimate_kv_bytes_per_token(model: ModelSpec, kv_dtype: PrecisionFormat, tensor_parallel_size: int = 1) -> float:
    """Bytes per token over all layers for one sequence, while the context is within every window."""
    return model.num_layers * estimate_kv_bytes_per_token_layer(model, kv_dtype, tensor_parallel_size)


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
    per_token = estimate_kv_bytes_per_token_layer(model, kv_dtype, tensor_parallel_size)
    layers = layers if layers is not None else range(model.num_layers)
    return users * per_token * sum(estimate_cached_tokens(model, i, context) for i in layers)


def estimate_kv_capacity_tokens(
    model: ModelSpec, kv_dtype: PrecisionFormat, free_bytes: float, *, layers: range | None = None,
    tensor_parallel_size: int = 1, block_size: int = 16,
) -> int:
    """Tokens of full-attention context that `free_bytes` holds, in whole pages of `block_size` tokens
    as vLLM allocates them (blocks = floor(free / page bytes))."""
    layers = layers if layers is not None else range(model.num_layers)
    page = block_size * estimate_kv_bytes_per_token_layer(model, kv_dtype, tensor_parallel_size) * len(layers)
    if page <= 0 or free_bytes <= 0:
        return 0
    return int(free_bytes // page) * block_size
