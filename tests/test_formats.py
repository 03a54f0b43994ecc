"""Bits per weight of every format, and GGUF file sizes pinned to measured llama.cpp files
(XiongjieDai GGUF sizes, llama.cpp PR #4766, llama.cpp benches/dgx-spark.md)."""

from __future__ import annotations

import pytest

from planner.errors import CatalogError
from planner.estimate.weights import estimate_weight_bytes, use_more_bits
from planner.loaders.formats import build_precision_mix, list_formats, resolve_kv_format, resolve_weight_format
from planner.units import GiB
from tests.conftest import reference_model

EXPECTED_BITS = {
    "fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "fp8_e5m2": 8, "int8": 8,
    "int4": 4.125,  # 4 + 16/128
    "gptq-int4": 4.15625,  # 4 + (16 + 4)/128
    "nf4": 4 + 8 / 64 + 32 / (64 * 256),  # QLoRA double quantisation: 4.127
    "nf4-nodq": 4.5,
    "mxfp4": 4.25,  # OCP MX: E8M0 scale per 32
    "nvfp4": 4.5,  # E4M3 scale per 16
    "ggml-q8_0": 8.5, "ggml-q4_0": 4.5, "ggml-q2_k": 2.625, "ggml-q3_k": 3.4375,
    "ggml-q4_k": 4.5, "ggml-q5_k": 5.5, "ggml-q6_k": 6.5625, "ggml-mxfp4": 4.25,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_BITS))
def test_bits_per_weight(name: str) -> None:
    assert resolve_weight_format(name).bits_per_weight() == pytest.approx(EXPECTED_BITS[name], abs=1e-12)


def test_nf4_double_quant_overhead_is_0_127_bits() -> None:
    assert resolve_weight_format("nf4").bits_per_weight() - 4 == pytest.approx(0.127, abs=5e-4)


def test_parametric_integer_formats() -> None:
    assert resolve_weight_format("int4-g64").bits_per_weight() == 4 + 16 / 64
    assert resolve_weight_format("int3-g128").bits_per_weight() == 3 + 16 / 128
    assert resolve_weight_format("int2-g64-asym").bits_per_weight() == 2 + (16 + 2) / 64


def test_unknown_format_suggests_the_closest() -> None:
    with pytest.raises(CatalogError) as err:
        resolve_weight_format("q4_k_n")
    assert err.value.suggestion == "q4_k_m" and err.value.exit_code == 2
    with pytest.raises(CatalogError):
        resolve_kv_format("fp7")


def test_every_format_has_a_source_and_positive_bits() -> None:
    for fmt in list_formats():
        assert fmt.source
        if not fmt.is_mix:
            assert fmt.bits_per_weight() > 0


def test_use_more_bits_matches_llama_cpp_for_32_layers() -> None:
    chosen = [i for i in range(32) if use_more_bits(i, 32)]
    assert chosen == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]


# (reference model, format, measured GiB, source). Llama-3-8B/70B share Llama-3.1's shapes.
MEASURED_GGUF = [
    ("Llama-3.1-8B", "q4_k_m", 4.58, "XiongjieDai 8B Q4_K_M"),
    ("Llama-3.1-8B", "f16", 14.96, "XiongjieDai 8B F16"),
    ("Llama-3.1-70B", "q4_k_m", 39.59, "XiongjieDai 70B Q4_K_M"),
    ("Llama-3.1-70B", "f16", 131.42, "XiongjieDai 70B F16"),
    ("Llama-2-7B", "f16", 12.55, "llama.cpp PR #4766"),
    ("Llama-2-7B", "q8_0", 6.67, "llama.cpp PR #4766"),
    ("Llama-2-7B", "q4_0", 3.56, "llama.cpp PR #4766"),
    ("Qwen2.5-7B", "q8_0", 7.54, "llama.cpp benches/dgx-spark.md"),
    ("Qwen3-30B-A3B", "q8_0", 30.25, "llama.cpp benches/dgx-spark.md"),
    ("gpt-oss-20b", "mxfp4_moe", 11.27, "llama.cpp benches/dgx-spark.md"),
    # llama.cpp tools/quantize/quantize.cpp QUANT_OPTIONS sizes "@ Llama-3-8B" (GiB).
    ("Llama-3.1-8B", "q2_k", 2.96, "quantize.cpp"),
    ("Llama-3.1-8B", "q3_k_m", 3.74, "quantize.cpp"),
    ("Llama-3.1-8B", "q4_0", 4.34, "quantize.cpp"),
    ("Llama-3.1-8B", "q5_k_m", 5.33, "quantize.cpp"),
    ("Llama-3.1-8B", "q6_k", 6.14, "quantize.cpp"),
    ("Llama-3.1-8B", "q8_0", 7.96, "quantize.cpp"),
]


@pytest.mark.parametrize(("name", "fmt", "gib", "source"), MEASURED_GGUF)
def test_gguf_file_sizes_within_half_a_percent(name: str, fmt: str, gib: float, source: str) -> None:
    # Tolerance 0.5%: the published sizes are rounded to 0.01 GiB and GGUF adds metadata.
    size = estimate_weight_bytes(reference_model(name), build_precision_mix(fmt)).total_bytes / GiB
    assert size == pytest.approx(gib, rel=0.005), source


def test_q4_k_m_keeps_more_bits_where_llama_cpp_does() -> None:
    model = reference_model("Llama-3.1-8B")
    weights = estimate_weight_bytes(model, build_precision_mix("q4_k_m"))
    formats = {(t.tensor.kind, t.tensor.layer): t.format_id for t in weights.tensors if t.tensor.is_matrix}
    assert formats[("lm_head", None)] == "ggml-q6_k"
    assert formats[("token_embd", None)] == "ggml-q4_k"
    assert formats[("attn_v", 0)] == "ggml-q6_k" and formats[("attn_v", 4)] == "ggml-q4_k"
    assert formats[("ffn_down", 6)] == "ggml-q6_k" and formats[("ffn_gate", 6)] == "ggml-q4_k"


def test_k_quants_fall_back_when_rows_are_not_multiples_of_256() -> None:
    # gpt-oss rows are 2880 wide: llama.cpp falls back from Q6_K to Q8_0; attn_output rows
    # (64 heads x 64 = 4096) are a multiple of 256 and keep Q6_K; the router stays unquantised.
    weights = estimate_weight_bytes(reference_model("gpt-oss-20b"), build_precision_mix("q6_k"))
    by_kind = {}
    for t in weights.tensors:
        if t.tensor.is_matrix:
            by_kind.setdefault(t.tensor.kind, set()).add(t.format_id)
    assert by_kind["attn_q"] == by_kind["ffn_up"] == by_kind["token_embd"] == {"ggml-q8_0"}
    assert by_kind["ffn_down"] == {"ggml-q8_0"}  # expert width 2880
    assert by_kind["attn_output"] == {"ggml-q6_k"}
    assert by_kind["ffn_gate_inp"] == {"unquantised-32bit"}


def test_quantised_checkpoints_keep_embeddings_in_16_bits_unless_overridden() -> None:
    model = reference_model("Llama-3.1-8B")
    default = estimate_weight_bytes(model, build_precision_mix("int4"))
    forced = estimate_weight_bytes(model, build_precision_mix("int4", embedding="int4", lm_head="int4"))
    embed = 128_256 * 4096
    assert default.by_component["embedding"] == embed * 2
    assert forced.by_component["embedding"] == embed * 4.125 / 8
    assert forced.bits_per_weight(8_030_261_248) == pytest.approx(4.125, abs=1e-3)  # norms stay 16-bit


def test_component_overrides() -> None:
    model = reference_model("gpt-oss-20b")
    official = estimate_weight_bytes(model, build_precision_mix("bf16", experts="mxfp4"))
    experts = 24 * 32 * (2880 * 5760 + 2880 * 2880)
    assert official.by_component["experts"] == pytest.approx(experts * 4.25 / 8 + 24 * 32 * (5760 + 2880) * 2)


def test_gpt_oss_120b_mxfp4_file_size() -> None:
    # llama.cpp benches/dgx-spark.md: gpt-oss-120b MXFP4 is 59.02 GiB.
    from planner.loaders.catalog import load_catalog_model

    size = estimate_weight_bytes(load_catalog_model("gpt-oss-120b"), build_precision_mix("mxfp4_moe")).total_bytes
    assert size / GiB == pytest.approx(59.02, rel=0.005)
