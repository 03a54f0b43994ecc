"""Decode and prefill time per stage: bytes over achievable bandwidth, FLOPs over achievable compute.

Decode is memory-bound at small batch (the llama.cpp tables in tests/data/decode_measurements.yaml): each token reads the
weights its layers touch and every user's KV cache. The step takes the larger of the memory time
and the compute time, plus a fixed per-step cost (kernel launches, sampling) that dominates small
models on fast GPUs. Achievable fractions of peak come from planner/catalog/calibration.yaml,
fitted to the measured decode tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimate.attention import build_layer_attention
from planner.estimate.shards import estimate_shard_fraction
from planner.estimate.weights import WeightEstimate
from planner.schemas.hardware import HardwareSpec
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.speed import SpeedCalibration
from planner.units import gb_s_to_bytes_s, tflops_to_flops, us_to_s

PLAIN_BITS = 16  # formats at 16 bits or more read at the plain-kernel efficiency


@dataclass(frozen=True)
class StageTime:
    """One decode step of one pipeline stage on one device."""

    memory_s: float
    compute_s: float
    overhead_s: float
    weight_bytes: float
    kv_bytes: float

    @property
    def total_s(self) -> float:
        return self.overhead_s + max(self.memory_s, self.compute_s)

    @property
    def bound(self) -> str:
        return "memory bandwidth" if self.memory_s >= self.compute_s else "compute"


def estimate_expert_fraction_touched(model: ModelSpec, batch: int) -> float:
    """Expected share of a layer's routed experts that `batch` tokens touch, routing uniform:
    1 - (1 - k/E)^batch (one token touches k of E; a batch touches more distinct experts)."""
    if model.moe is None:
        return 1.0
    share = model.moe.experts_per_token / model.moe.num_experts
    return 1.0 - (1.0 - share) ** batch


def _layer_attention(weights: WeightEstimate, model: ModelSpec, mix: PrecisionMix, tp: int) -> tuple:
    """The layer descriptions for one rank of a tp-way group, cached on the WeightEstimate (which
    belongs to one model and precision mix)."""
    cache = weights.derived.setdefault("attention", {})
    key = (model.name, mix.kv_cache_dtype.id, tp)
    if key not in cache:
        cache[key] = build_layer_attention(model, mix.kv_cache_dtype, tp)
    return cache[key]


def _attention_sums(weights: WeightEstimate, model: ModelSpec, mix: PrecisionMix, tp: int, context: int) -> tuple:
    """Prefix sums over layers of (cache bytes of one sequence, attention FLOPs of one new token)
    at `context`, cached on the WeightEstimate."""
    cache = weights.derived.setdefault("attention_sums", {})
    key = (model.name, mix.kv_cache_dtype.id, tp, context)
    if key not in cache:
        kv, flops = [0.0], [0.0]
        for layer in _layer_attention(weights, model, mix, tp):
            kv.append(kv[-1] + layer.cache_bytes(context))
            flops.append(flops[-1] + layer.attention_flops_per_token(context))
        cache[key] = (kv, flops)
    return cache[key]


def _per_layer_reads(weights: WeightEstimate, model: ModelSpec, tp: int) -> tuple:
    """Prefix sums over layers of (plain bytes, quantised bytes, parameters) one rank holds, dense
    tensors and routed experts apart, plus the same for the output head (and a tied embedding);
    cached on the WeightEstimate. The embedding is read one row per token, not as a matrix."""
    cache = weights.derived.setdefault("decode_reads", {})
    key = (model.name, tp)
    if key in cache:
        return cache[key]
    n = model.num_layers
    series = [[0.0] * n for _ in range(6)]  # dense plain, quantised, params; experts plain, quantised, params
    head = [0.0] * 6
    for item in weights.tensors:
        tensor = item.tensor
        if tensor.layer is None and tensor.kind == "token_embd" and not model.tie_word_embeddings:
            continue
        share = estimate_shard_fraction(tensor, model, tp)
        base = 3 if tensor.component == "experts" else 0
        kind = 0 if item.bits_per_weight >= PLAIN_BITS else 1
        if tensor.layer is None:
            head[base + kind] += item.bytes * share
            head[base + 2] += tensor.params * share
            continue
        series[base + kind][tensor.layer] += item.bytes * share
        series[base + 2][tensor.layer] += tensor.params * share
    prefix = []
    for values in series:
        running = [0.0]
        for v in values:
            running.append(running[-1] + v)
        prefix.append(running)
    cache[key] = (prefix, tuple(head))
    return cache[key]


def _touched_weight_bytes(
    weights: WeightEstimate, model: ModelSpec, layers: range, first: bool, last: bool, tp: int, batch: int
) -> tuple[float, float, float]:
    """(plain bytes, quantised bytes, active parameters) one rank reads per decode step: dense
    tensors whole, routed experts in the share `batch` tokens touch (estimate_expert_fraction_touched),
    and the parameters one token uses."""
    prefix, head = _per_layer_reads(weights, model, tp)
    a, b = layers.start, layers.stop
    touched = estimate_expert_fraction_touched(model, batch)
    per_token = estimate_expert_fraction_touched(model, 1)
    span = [p[b] - p[a] for p in prefix]
    if last:
        span = [x + h for x, h in zip(span, head)]
    plain = span[0] + touched * span[3]
    quant = span[1] + touched * span[4]
    params = span[2] + per_token * span[5]
    return plain, quant, params


def estimate_decode_stage_time(
    model: ModelSpec,
    mix: PrecisionMix,
    weights: WeightEstimate,
    device: HardwareSpec,
    calibration: SpeedCalibration,
    *,
    layers: range,
    first: bool,
    last: bool,
    tensor_parallel_size: int = 1,
    batch: int = 1,
    context: int = 1,
) -> StageTime:
    """Time of one decode step (one new token for each of `batch` users) on one rank of a stage."""
    plain, quantised, active_params = _touched_weight_bytes(weights, model, layers, first, last, tensor_parallel_size, batch)
    kv_sum, flops_sum = _attention_sums(weights, model, mix, tensor_parallel_size, context)
    a, b = layers.start, layers.stop
    kv = batch * (kv_sum[b] - kv_sum[a])
    bandwidth = gb_s_to_bytes_s(device.memory_bandwidth_gb_s)
    memory_s = (plain + kv) / (bandwidth * calibration.plain_bandwidth_efficiency) + quantised / (
        bandwidth * calibration.quantized_bandwidth_efficiency
    )
    attention_flops = batch * (flops_sum[b] - flops_sum[a])
    flops = 2 * active_params * batch + attention_flops
    compute_s = flops / (tflops_to_flops(device.fp16_tflops) * calibration.compute_efficiency)
    return StageTime(memory_s, compute_s, calibration.step_overhead_s, plain + quantised, kv)


def estimate_prefill_stage_time(
    model: ModelSpec,
    mix: PrecisionMix,
    weights: WeightEstimate,
    device: HardwareSpec,
    calibration: SpeedCalibration,
    *,
    layers: range,
    last: bool,
    tensor_parallel_size: int = 1,
    prompt_tokens: int,
) -> float:
    """Seconds to prefill one prompt through a stage: compute-bound, 2 x active parameters per
    token plus attention's quadratic term: causal, each token attends to half the held tokens on
    average, 2 x s x min(s, window) x heads x head_dim per layer."""
    _, _, active = _touched_weight_bytes(weights, model, layers, True, last, tensor_parallel_size, 1)
    _, flops_sum = _attention_sums(weights, model, mix, tensor_parallel_size, prompt_tokens)
    attention = 0.5 * prompt_tokens * (flops_sum[layers.stop] - flops_sum[layers.start])
    flops = 2 * active * prompt_tokens + attention
    return flops / (tflops_to_flops(device.fp16_tflops) * calibration.compute_efficiency)


def estimate_allreduce_s(message_bytes: float, ranks: int, bandwidth_gb_s: float, latency_us: float) -> float:
    """Ring all-reduce: 2(t-1)/t of the message over the link, plus 2(t-1) latencies."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * message_bytes / gb_s_to_bytes_s(bandwidth_gb_s) + 2 * (ranks - 1) * us_to_s(latency_us)


def estimate_hop_s(message_bytes: float, bandwidth_gb_s: float, latency_us: float, calibration: SpeedCalibration) -> float:
    """A pipeline hop: the activations over the link, its latency and the engine's synchronisation."""
    return message_bytes / gb_s_to_bytes_s(bandwidth_gb_s) + us_to_s(latency_us) + calibration.hop_overhead_s



def calibration_class(device: HardwareSpec) -> str:
    """The device class whose fitted efficiencies apply (see HardwareSpec.calibration_class)."""
    return device.calibration_class
