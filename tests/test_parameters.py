"""Exact parameter counts, pinned to counts from Hugging Face transformers 5.24 (model built on the meta device, every parameter tensor once)."""

from __future__ import annotations

import pytest

from planner.estimate.parameters import estimate_layer_tensors, estimate_model_tensors, estimate_parameters
from tests.conftest import reference_model, tiny_model

# model: (total, active) exactly as transformers 5.24 counts them (tests/data/README.md).
REFERENCE_COUNTS = {
    "Llama-2-7B": (6_738_415_616, None),
    "Llama-3.1-8B": (8_030_261_248, None),
    "Llama-3.1-70B": (70_553_706_496, None),
    "Llama-3.1-405B": (405_853_388_800, None),
    "Mistral-7B-v0.1": (7_241_732_096, None),
    "Mixtral-8x7B": (46_702_792_704, 12_879_925_248),
    "Qwen2.5-7B": (7_615_616_512, None),
    "Qwen2.5-72B": (72_706_203_648, None),
    "Qwen3-8B": (8_190_735_360, None),
    "Qwen3-32B": (32_762_123_264, None),
    "Qwen3-30B-A3B": (30_532_122_624, 3_353_032_704),
    # We count DeepSeek-V3's e_score_correction_bias (14,848 values the checkpoint stores and every
    # token reads); the reference lists 671,026,404,352 without it and says counting it is equally right.
    "DeepSeek-V3": (671_026_419_200, 37_552_297_472),
    "Gemma-2-9B": (9_241_705_984, None),
    "Phi-3-mini-4k": (3_821_079_552, None),
    "gpt-oss-20b": (20_914_757_184, 4_187_440_704),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_exact_counts_match_reference(name: str) -> None:
    total, active = REFERENCE_COUNTS[name]
    counts = estimate_parameters(reference_model(name))
    assert counts.total_parameters == total
    assert counts.active_parameters == (active if active is not None else total)


def test_deepseek_without_the_score_bias_is_the_transformers_count() -> None:
    counts = estimate_parameters(reference_model("DeepSeek-V3"))
    score_bias = 58 * 256  # 58 MoE layers x 256 experts
    assert counts.total_parameters - score_bias == 671_026_404_352


def test_deepseek_mtp_module_is_reported_separately() -> None:
    # The reference: "plus a 14B multi-token-prediction module that serving usually drops".
    mtp = estimate_parameters(reference_model("DeepSeek-V3")).mtp_parameters
    assert 13e9 < mtp < 15e9


def test_components_sum_to_total() -> None:
    counts = estimate_parameters(reference_model("Qwen3-30B-A3B"))
    assert sum(counts.total.values()) == counts.total_parameters
    assert counts.total["experts"] > 0 and counts.total["dense_mlp"] == 0
    assert counts.active["experts"] == counts.total["experts"] * 8 // 128


def test_tied_embeddings_counted_once() -> None:
    tied = estimate_parameters(tiny_model(tie_word_embeddings=True))
    untied = estimate_parameters(tiny_model(tie_word_embeddings=False))
    assert untied.total_parameters - tied.total_parameters == 100 * 64
    assert tied.total["lm_head"] == 0


def test_explicit_head_dim_is_used() -> None:
    # Qwen3-32B: 64 heads x head_dim 128 = 8192 wide q_proj on a 5120 hidden size.
    model = reference_model("Qwen3-32B")
    assert model.head_dim == 128 and model.hidden_size // model.num_attention_heads == 80
    q = next(t for t in estimate_layer_tensors(model, 0) if t.kind == "attn_q")
    assert q.params == 5120 * 64 * 128


def test_architecture_features_come_from_config_fields() -> None:
    # The same shapes under different model_types differ only by their documented features.
    base = estimate_parameters(tiny_model(model_type="llama")).total_parameters
    qwen2 = estimate_parameters(tiny_model(model_type="qwen2")).total_parameters
    qwen3 = estimate_parameters(tiny_model(model_type="qwen3")).total_parameters
    head_dim, layers = 16, 4
    assert qwen2 - base == layers * (4 * 16 + 2 * 2 * 16)  # q, k, v biases
    assert qwen3 - base == layers * 2 * head_dim  # q_norm and k_norm
    with_bias = estimate_parameters(tiny_model(attention_bias=True)).total_parameters
    assert with_bias - base == layers * (64 + 32 + 32 + 64)


def test_unknown_model_type_with_standard_keys_works() -> None:
    counts = estimate_parameters(tiny_model(model_type="brand_new_arch"))
    assert counts.total_parameters == estimate_parameters(tiny_model()).total_parameters


def test_moe_layer_selection_by_fields() -> None:
    # DeepSeek: first_k_dense_replace dense layers; Qwen-MoE: decoder_sparse_step and mlp_only_layers.
    v3 = reference_model("DeepSeek-V3")
    assert [v3.is_moe_layer(i) for i in range(4)] == [False, False, False, True]
    model = tiny_model(model_type="qwen3_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                       decoder_sparse_step=2, mlp_only_layers=[3])
    assert [model.is_moe_layer(i) for i in range(4)] == [False, True, False, False]


def test_every_tensor_is_counted_once() -> None:
    model = reference_model("gpt-oss-20b")
    tensors = estimate_model_tensors(model)
    assert sum(t.params for t in tensors) == 20_914_757_184
    assert sum(1 for t in tensors if t.kind == "token_embd") == 1
