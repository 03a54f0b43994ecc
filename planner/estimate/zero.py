"""ZeRO (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
Models", SC'20): what each stage partitions across the data-parallel ranks, what it costs in
traffic, and which combinations DeepSpeed accepts. Used by training memory, training speed and
the training candidates alike."""

from __future__ import annotations

from dataclasses import dataclass

# Stage 3 gathers the parameters for the forward and the backward pass and reduce-scatters the
# gradients: 1.5x the traffic of a plain all-reduce (ZeRO s7.2.2).
ZERO3_TRAFFIC_FACTOR = 1.5
OFFLOADS = ("none", "optimizer", "optimizer+params")


@dataclass(frozen=True)
class ZeroPartition:
    """Divisors of each model state per data-parallel rank (1 = replicated)."""

    optimizer: int  # stage >= 1: optimizer states (and fp32 master weights)
    gradients: int  # stage >= 2
    parameters: int  # stage 3


def estimate_zero_partition(stage: int, data_parallel_size: int) -> ZeroPartition:
    """How stage `stage` splits the model states across `data_parallel_size` ranks."""
    dp = max(1, data_parallel_size)
    return ZeroPartition(
        optimizer=dp if stage >= 1 else 1,
        gradients=dp if stage >= 2 else 1,
        parameters=dp if stage >= 3 else 1,
    )


def estimate_zero_traffic_factor(stage: int) -> float:
    """Gradient-synchronisation bytes relative to an all-reduce of the gradients."""
    return ZERO3_TRAFFIC_FACTOR if stage >= 3 else 1.0


def check_zero_layout(stage: int, data_parallel_size: int, offload: str) -> str | None:
    """Why a ZeRO stage and offload cannot be used, or None.

    DeepSpeed offloads parameters only under stage 3 (offload_param is a stage-3 option), and any
    offload needs stage 1 or above (ZeRO-Offload partitions what it moves)."""
    if stage not in (0, 1, 2, 3):
        return f"ZeRO stage {stage} does not exist (0-3)"
    if offload not in OFFLOADS:
        return f"offload '{offload}' is not one of {', '.join(OFFLOADS)}"
    if offload == "optimizer+params" and stage != 3:
        return "parameter offload needs ZeRO stage 3"
    if offload != "none" and stage == 0:
        return "offloading needs ZeRO stage 1 or above"
    return None


def is_zero_useful(stage: int, data_parallel_size: int, offload: str) -> bool:
    """ZeRO shards across data-parallel ranks: with one rank a stage above 0 changes nothing,
    unless it is there to offload (ZeRO-Offload on a single GPU)."""
    return stage == 0 or data_parallel_size > 1 or offload != "none"
