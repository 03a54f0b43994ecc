"""KV cache, pinned to the per-token formula on the configs in tests/data/model-configs and to vLLM's accounting (issue #10517)."""

from __future__ import annotations

import pytest

from planner.estimate.kv_cache import (
    estimate_kv_bytes_per_token,
    estimate_kv_bytes_per_token_layer,
    estimate_kv_cache_bytes,
    estimate_kv_capacity_tokens,
)
from planner.estimate.seed import estimate_seed_kv_cache_gb
from planner.loaders.formats import resolve_kv_format
from planner.units import GiB, MiB
from tests.conftest import reference_model, tiny_model

FP16 = resolve_kv_format("fp16")

# Bytes per token, 16-bit cache, all layers, one sequence, no tensor parallelism (reference table).
REFERENCE_KV = {
    "Llama-2-7B": 524_288,
    "Llama-3.1-8B": 131_072,
    "Llama-3.1-70B": 327_680,
    "Llama-3.1-405B": 516_096,
    "Qwen2.5-7B": 57_344,
    "Qwen3-8B": 147_456,
    "Qwen3-30B-A3B": 98_304,
    "DeepSeek-V3": 70_272,
    "Gemma-2-9B": 344_064,
    "gpt-oss-20b": 49_152,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_KV))
def test_bytes_per_token_match_reference(name: str) -> None:
    assert estimate_kv_bytes_per_token(reference_model(name), FP16) == REFERENCE_KV[name]


def test_mla_is_71_times_smaller_than_the_naive_per_head_formula() -> None:
    model = reference_model("DeepSeek-V3")
    # Per-head K (nope 128 + rope 64) and V (128) for all 128 heads, 2 bytes each.
    naive = model.num_layers * model.num_key_value_heads * ((128 + 64) + 128) * 2
    assert naive == 4_997_120
    assert round(naive / estimate_kv_bytes_per_token(model, FP16)) == 71


def test_mla_latent_is_not_split_across_tensor_parallel_ranks() -> None:
    model = reference_model("DeepSeek-V3")
    assert estimate_kv_bytes_per_token_layer(model, FP16, 8) == estimate_kv_bytes_per_token_layer(model, FP16, 1)


def test_gqa_heads_split_across_ranks_and_replicate_beyond_kv_heads() -> None:
    model = reference_model("Llama-3.1-8B")  # 8 KV heads
    one = estimate_kv_bytes_per_token_layer(model, FP16, 1)
    assert estimate_kv_bytes_per_token_layer(model, FP16, 4) == one / 4
    assert estimate_kv_bytes_per_token_layer(model, FP16, 16) == one / 8  # one head per rank, replicated


def test_matches_the_seed_formula_for_full_attention() -> None:
    model = reference_model("Llama-3.1-70B")
    ours = estimate_kv_cache_bytes(model, FP16, context=8192, users=32)
    seed = estimate_seed_kv_cache_gb(8192, model.num_layers, model.num_key_value_heads, model.head_dim, 32)
    assert ours / 1e9 == pytest.approx(seed, rel=1e-12)


def test_sliding_layers_stop_growing_at_their_window() -> None:
    gemma = reference_model("Gemma-2-9B")  # 42 layers, half slide over 4096 tokens
    per_layer = estimate_kv_bytes_per_token_layer(gemma, FP16)
    at_window = estimate_kv_cache_bytes(gemma, FP16, context=4096, users=1)
    assert at_window == 4096 * 344_064
    beyond = estimate_kv_cache_bytes(gemma, FP16, context=8192, users=1)
    assert beyond == per_layer * (21 * 8192 + 21 * 4096)
    oss = reference_model("gpt-oss-20b")  # 12 sliding layers over 128 tokens, 12 full
    assert estimate_kv_cache_bytes(oss, FP16, context=128, users=1) == 128 * 49_152
    assert estimate_kv_cache_bytes(oss, FP16, context=10_000, users=1) == 2048 * (12 * 10_000 + 12 * 128)


def test_disabled_sliding_window_is_ignored() -> None:
    # Qwen2.5 lists a sliding_window but use_sliding_window: false turns it off.
    model = reference_model("Qwen2.5-7B")
    assert model.layer_types == ()
    assert estimate_kv_cache_bytes(model, FP16, context=100_000, users=1) == 100_000 * 57_344


def test_kv_dtypes_scale_the_cache() -> None:
    model = reference_model("Llama-3.1-8B")
    fp8 = estimate_kv_bytes_per_token(model, resolve_kv_format("fp8"))
    assert fp8 == 131_072 / 2
    int4 = estimate_kv_bytes_per_token(model, resolve_kv_format("int4"))
    assert int4 == 131_072 / 4 * (4 + 32 / 128) / 4  # fp16 scale and zero per token and head
    q8 = estimate_kv_bytes_per_token(model, resolve_kv_format("q8_0"))
    assert q8 == 131_072 / 16 * 8.5


def test_vllm_page_and_block_count_from_the_reference_log() -> None:
    # vLLM issue #10517: a 16-token page of Llama-3.1-8B is 2 MiB; 3.81 GiB holds 1952 blocks.
    model = reference_model("Llama-3.1-8B")
    page = 16 * estimate_kv_bytes_per_token(model, FP16)
    assert page == 2 * MiB
    tokens = estimate_kv_capacity_tokens(model, FP16, 3.81 * GiB)
    assert tokens == 1950 * 16  # floor(3.81 GiB / 2 MiB) = 1950; vLLM's 3.81 is itself rounded (1952)
    assert abs(tokens / 16 - 1952) / 1952 < 0.01


def test_users_and_context_scale_linearly() -> None:
    model = tiny_model()
    one = estimate_kv_cache_bytes(model, FP16, context=100, users=1)
    assert estimate_kv_cache_bytes(model, FP16, context=100, users=7) == 7 * one
    assert estimate_kv_cache_bytes(model, FP16, context=300, users=1) == 3 * one
