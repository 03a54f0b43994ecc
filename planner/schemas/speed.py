"""Fitted speed-model constants for one device class."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeedCalibration:
    """Achievable fractions of a device class's peaks, and fixed costs (fitted, see docs/speed.md)."""

    plain_bandwidth_efficiency: float  # 16-bit weights and KV
    quantized_bandwidth_efficiency: float  # block-quantised weights (dequantised on the fly)
    compute_efficiency: float  # of the dense fp16 peak
    step_overhead_s: float  # per decode step, whatever the model size
    hop_overhead_s: float  # per pipeline hop (synchronisation between devices)
