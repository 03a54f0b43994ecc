"""Fitted speed-model constants for one engine class on one device class."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeedCalibration:
    """Achievable fractions of a device class's peaks, and fixed costs, for one engine class
    (fitted, see docs/speed.md)."""

    plain_bandwidth_efficiency: float  # 16-bit and 8-bit float weights, and the KV cache
    quantized_bandwidth_efficiency: float  # block-quantised weights (dequantised on the fly)
    compute_efficiency: float  # of the dense peak of the dtype the matrix products run in (16-bit and FP8 weights, attention)
    step_overhead_s: float  # per forward pass, whatever the model size (scheduling, sampling)
    hop_overhead_s: float  # per pipeline hop inside a machine (synchronisation between devices)
    layer_overhead_s: float = 0.0  # per layer per forward pass (kernel launches and the gaps between them)
    moe_layer_overhead_s: float = 0.0  # more per MoE layer (routing, permutes, grouped expert kernels)
    moe_kernel_efficiency: float = 1.0  # routed experts' reads and products, as a share of the dense kernels' efficiency
    allreduce_overhead_s: float = 0.0  # the engine's own cost per tensor-parallel all-reduce, beyond the link's
    kv_bandwidth_efficiency: float | None = None  # the KV cache's reads by the attention kernels; None: plain_bandwidth_efficiency
    quantized_compute_efficiency: float | None = None  # block-quantised weights' products (dequantising kernels); None: compute_efficiency
    network_hop_overhead_s: float = 0.0  # per pipeline hop between machines (the engine's network transport)
    request_overhead_s: float = 0.0  # per request before its first token, outside the forward passes (API server, tokenizer, scheduler)
    engine_class: str = "llama.cpp"  # which engine class the figures belong to
