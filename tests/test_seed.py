"""The seed guide's formulas, reproduced exactly ("Parameter Counts and VRAM Requirements for LLMs - Comprehensive Guide": TL;DR, N x B/8 x (1 + O), KV, speed tiers)."""

from __future__ import annotations

import pytest

from planner.estimate.seed import (
    classify_decode_speed,
    estimate_seed_kv_cache_gb,
    estimate_seed_memory_gb,
    estimate_seed_table,
)
from planner.estimate.weights import estimate_weight_bytes
from planner.loaders.formats import build_precision_mix
from planner.report.memory import to_quick_memory_dict
from planner.loaders.formats import resolve_weight_format


def test_tldr_worked_example_for_10b() -> None:
    # "A 10B-parameter model needs approximately 40 / 20 / 10 / 5 GB".
    assert estimate_seed_table(10) == {"FP32": 40, "FP16/BF16": 20, "INT8": 10, "INT4": 5}


@pytest.mark.parametrize(("n", "bits", "o", "gb"), [(70, 16, 0.2, 168.0), (7, 4, 0.1, 3.85), (10, 32, 0.3, 52.0)])
def test_base_memory_formula(n: float, bits: int, o: float, gb: float) -> None:
    assert estimate_seed_memory_gb(n, bits, o) == pytest.approx(gb)


def test_quick_mode_matches_the_seed_with_zero_reserve() -> None:
    for fmt, gb in (("fp32", 40), ("bf16", 20), ("int8", 10)):
        report = to_quick_memory_dict(10 * 10**9, resolve_weight_format(fmt), overhead_factor=0.0, runtime_reserve_bytes=0)
        assert report["memory"]["total_bytes"] == gb * 10**9
    report = to_quick_memory_dict(10 * 10**9, resolve_weight_format("bf16"), overhead_factor=0.2, runtime_reserve_bytes=0)
    assert report["memory"]["total_bytes"] == 24 * 10**9


def test_exact_accounting_reduces_to_the_seed_for_plain_formats() -> None:
    # With every tensor at B bits, exact bytes = N x B/8; the seed's rule is the exact rule for plain formats.
    from tests.conftest import reference_model

    model = reference_model("Llama-3.1-8B")
    weights = estimate_weight_bytes(model, build_precision_mix("fp32"))
    assert weights.total_bytes == 8_030_261_248 * 4


def test_seed_kv_formula() -> None:
    # Llama-3.1-70B, 8192 tokens, 32 users: 8192 x 80 x 8 x 128 x 2 x 2 x 32 / 1e9.
    assert estimate_seed_kv_cache_gb(8192, 80, 8, 128, 32) == pytest.approx(85.899345920)


@pytest.mark.parametrize(("speed", "tier"), [(5, "painful"), (9.99, "painful"), (10, "acceptable"), (19.9, "acceptable"), (20, "smooth"), (120, "smooth")])
def test_speed_tiers(speed: float, tier: str) -> None:
    assert classify_decode_speed(speed) == tier
