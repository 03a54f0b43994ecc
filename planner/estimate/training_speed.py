"""Training step time for a tensor x pipeline x data-parallel layout.

FLOPs per step follow Narayanan et al. 2021 ("Efficient Large-Scale Language Model Training on
GPU Clusters Using Megatron-LM", eq. 3), generalised to any parameter count: 6 x active
parameters x tokens for forward and backward plus 12 x layers x hidden x sequence x tokens for
attention scores; full recomputation repeats the forward (8 and 16 instead of 6 and 12),
selective recomputation repeats only the attention scores. The 1F1B pipeline adds a bubble of
(p - 1) / m of the compute time (m micro-batches per step). Tensor parallelism all-reduces the
activations four times per layer per micro-batch; data parallelism reduces the 16-bit gradients
once per step (ZeRO-3 also gathers the parameters, 1.5x the traffic, Rajbhandari et al. 2020);
optimizer offload moves gradients and parameters over PCIe each step. Communication is not
assumed to overlap compute, so the estimate is conservative.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimate.speed import estimate_allreduce_s
from planner.estimate.zero import estimate_zero_traffic_factor
from planner.units import gb_s_to_bytes_s, tflops_to_flops


@dataclass(frozen=True)
class TrainingStep:
    """Where one optimizer step's time goes."""

    compute_s: float
    bubble_s: float
    tensor_parallel_s: float
    data_parallel_s: float
    offload_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.bubble_s + self.tensor_parallel_s + self.data_parallel_s + self.offload_s

    @property
    def bottleneck(self) -> str:
        parts = {"compute": self.compute_s, "pipeline bubble": self.bubble_s, "tensor-parallel link": self.tensor_parallel_s,
                 "data-parallel network": self.data_parallel_s, "offload over PCIe": self.offload_s}
        return max(parts, key=lambda k: (parts[k], k))


def estimate_training_flops(active_parameters: float, layers: int, hidden: int, sequence: int, tokens: float,
                            recompute: str, trainable_fraction: float = 1.0) -> float:
    """FLOPs of one step over `tokens` tokens (Narayanan et al. 2021, eq. 3, generalised).
    With adapters only (LoRA), weight gradients are skipped: backward costs one forward, not two."""
    dense = (2 + 2 + 2 * trainable_fraction) * active_parameters * tokens
    attention = 12 * layers * hidden * sequence * tokens
    if recompute == "full":
        dense += 2 * active_parameters * tokens
        attention += 4 * layers * hidden * sequence * tokens
    elif recompute == "selective":
        attention += 4 * layers * hidden * sequence * tokens
    return dense + attention


def estimate_training_step(
    *,
    flops: float,
    devices: int,
    tflops: float,
    compute_efficiency: float,
    pipeline_parallel_size: int,
    microbatches: int,
    tensor_parallel_size: int,
    tp_message_bytes: float,
    tp_collectives: int,
    tp_bandwidth_gb_s: float,
    tp_latency_us: float,
    data_parallel_size: int,
    gradient_bytes: float,
    zero_stage: int,
    dp_bandwidth_gb_s: float,
    dp_latency_us: float,
    offload_bytes: float,
    pcie_bandwidth_gb_s: float,
) -> TrainingStep:
    """Seconds of one optimizer step, by part."""
    compute = flops / (devices * tflops_to_flops(tflops) * compute_efficiency)
    bubble = compute * (pipeline_parallel_size - 1) / max(microbatches, 1)
    tp = tp_collectives * estimate_allreduce_s(tp_message_bytes, tensor_parallel_size, tp_bandwidth_gb_s or 1.0, tp_latency_us)
    traffic = gradient_bytes * estimate_zero_traffic_factor(zero_stage)
    dp = estimate_allreduce_s(traffic, data_parallel_size, dp_bandwidth_gb_s or 1.0, dp_latency_us)
    offload = offload_bytes / gb_s_to_bytes_s(pcie_bandwidth_gb_s) if offload_bytes else 0.0
    return TrainingStep(compute, bubble, tp, dp, offload)
