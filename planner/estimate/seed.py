"""The seed guide's quick formulas, kept exactly so its numbers can be reproduced.

Seed guide ("Parameter Counts and VRAM Requirements for LLMs"): TL;DR N x 4 / 2 / 1 / 0.5 GB;
Base Memory (GB) = N x (B/8) x (1 + O) with N in billions, O commonly 0.1-0.3;
KV Cache (GB) = context x layers x kv_heads x head_dim x 2 x 2 x users / 10^9;
speed tiers: < 10 tokens/s painful, 10-20 acceptable, 20+ smooth.
"""

from __future__ import annotations

from typing import Literal

SEED_FORMAT_BITS: dict[str, int] = {"FP32": 32, "FP16/BF16": 16, "INT8": 8, "INT4": 4}
SEED_OVERHEAD_RANGE = (0.1, 0.3)

SpeedTier = Literal["painful", "acceptable", "smooth"]


def estimate_seed_memory_gb(parameters_billion: float, bits: float, overhead: float = 0.0) -> float:
    """Base Memory (GB) = N x (B/8) x (1 + O)."""
    return parameters_billion * bits / 8 * (1 + overhead)


def estimate_seed_table(parameters_billion: float, overhead: float = 0.0) -> dict[str, float]:
    """The seed's TL;DR table for a model of N billion parameters, in GB."""
    return {label: estimate_seed_memory_gb(parameters_billion, bits, overhead) for label, bits in SEED_FORMAT_BITS.items()}


def estimate_seed_kv_cache_gb(
    context_length: int, num_layers: int, num_kv_heads: int, head_dim: int, num_users: int
) -> float:
    """The seed's KV-cache formula (16-bit cache, every layer full attention), in GB."""
    return context_length * num_layers * num_kv_heads * head_dim * 2 * 2 * num_users / 10**9


def classify_decode_speed(tokens_per_s: float) -> SpeedTier:
    """The seed's rule of thumb for generation speed."""
    if tokens_per_s < 10:
        return "painful"
    if tokens_per_s < 20:
        return "acceptable"
    return "smooth"
