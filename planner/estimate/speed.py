"""Time of one forward pass on one rank of one pipeline stage: bytes over achievable bandwidth,
FLOPs over achievable compute, whichever is larger, plus fixed costs.

A forward pass (a "step") carries `decode` sequences adding one token each and `prefill` prompt
tokens (chunked prefill mixes the two). It reads the stage's weights once, the routed experts
its tokens touch, and every decoding sequence's KV cache; it computes 2 x active parameters per
token in the dtype the matrix products run in (FP8 and FP4 tensor cores where the engine and the
device use them) plus attention's score and value products. Achievable fractions of the peaks
are fitted per engine class and device class (planner/catalog/calibration.yaml, docs/speed.md).
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

PLAIN_BITS = 16  # integer and block formats under 16 bits dequantise on the fly; 16-bit and FP8 ones do not
QUANTISED_FAMILIES = ("int8", "int4", "nf4", "mxfp4", "nvfp4", "gguf", "mlx")


def _families(mix: PrecisionMix) -> dict[str, str]:
    """Format id -> family, for every format the mix may store a tensor in."""
    formats = [mix.weights, *mix.formats.values()]
    formats += [f for c in ("embedding", "lm_head", "attention", "dense_mlp", "experts", "shared_experts")
                if (f := getattr(mix, c)) is not None]
    return {f.id: f.family for f in formats}


@dataclass(frozen=True)
class StepLoad:
    """What one forward pass carries: `decode` sequences at `context` cached tokens each, and
    `prefill` prompt tokens whose average position is `prefill_position` (averages may be fractional)."""

    decode: float
    context: int
    prefill: float = 0.0
    prefill_position: int = 0

    @property
    def tokens(self) -> float:
        return self.decode + self.prefill


@dataclass(frozen=True)
class StageTime:
    """One forward pass of one pipeline stage on one rank."""

    memory_s: float
    compute_s: float
    overhead_s: float
    weight_bytes: float
    kv_bytes: float
    flops: float
    host_s: float = 0.0  # work left to the machine's host (llama.cpp offload), after the device's own
    host_bound: str = "host memory bandwidth"  # what limits that work: host memory bandwidth | host compute | PCIe upload

    @property
    def busy_s(self) -> float:
        return max(self.memory_s, self.compute_s)

    @property
    def total_s(self) -> float:
        return self.overhead_s + self.busy_s + self.host_s

    @property
    def bound(self) -> str:
        if self.host_s > self.busy_s:
            return self.host_bound
        return "memory bandwidth" if self.memory_s >= self.compute_s else "compute"


def estimate_expert_fraction_touched(model: ModelSpec, tokens: float) -> float:
    """Expected share of a layer's routed experts that `tokens` tokens touch, routing uniform:
    1 - (1 - k/E)^tokens (one token touches k of E; a batch touches more distinct experts)."""
    if model.moe is None:
        return 1.0
    share = model.moe.experts_per_token / model.moe.num_experts
    return 1.0 - (1.0 - share) ** max(tokens, 0.0)


def estimate_matmul_tflops(device: HardwareSpec, family: str, speed_class: str) -> float:
    """Dense peak of the dtype a weight format's matrix products run in. vLLM and SGLang run FP8
    weights as W8A8 on FP8 tensor cores (compute capability 8.9 and up; weight-only Marlin below),
    NVFP4 on FP4 tensor cores (Blackwell) and MXFP4 experts against MXFP8 activations there
    (vllm quantization/fp8.py, modelopt.py, fused_moe/oracle/mxfp4.py). Everything else, and every
    format in MLX, dequantises to 16 bits before the product. llama.cpp multiplies block-quantised
    weights against 8-bit quantised activations on the integer tensor cores (MMQ, ggml-cuda/mmq.cuh,
    Turing and later)."""
    if speed_class == "llama.cpp" and device.vendor == "nvidia":
        if family == "gguf" and device.int8_tops and (device.capability or 0) >= 7.5:
            return device.int8_tops
        if family == "float" and device.fp16_accumulate_tflops:
            return device.fp16_accumulate_tflops  # F16 products through cuBLAS with CUBLAS_COMPUTE_16F (ggml-cuda.cu)
    if speed_class == "gpu-server":
        fp8_capable = device.fp8_tflops is not None and (device.vendor != "nvidia" or (device.capability or 0) >= 8.9)
        if family == "fp8" and fp8_capable:
            return device.fp8_tflops or device.bf16
        if family == "nvfp4" and device.fp4_tflops:
            return device.fp4_tflops
        if family == "mxfp4" and device.fp4_tflops and device.fp8_tflops:
            return device.fp8_tflops
    return device.bf16


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


def _prefix(values: list[float]) -> list[float]:
    running = [0.0]
    for v in values:
        running.append(running[-1] + v)
    return running


@dataclass(frozen=True)
class _Reads:
    """Prefix sums over layers of what one rank holds: bytes read by plain and by dequantising
    kernels, dense tensors and routed experts apart, and parameters by weight format; the output
    head (and a tied embedding) apart."""

    dense_plain: list[float]
    dense_quant: list[float]
    expert_plain: list[float]
    expert_quant: list[float]
    dense_params: dict[str, list[float]]  # format id -> prefix sums
    expert_params: dict[str, list[float]]
    head_plain: float
    head_quant: float
    head_params: dict[str, float]
    families: dict[str, str]  # format id -> family (GGUF float tensors as "float")


def _per_layer_reads(weights: WeightEstimate, model: ModelSpec, mix: PrecisionMix, tp: int) -> _Reads:
    """Cached on the WeightEstimate. The embedding is read one row per token, not as a matrix."""
    cache = weights.derived.setdefault("step_reads", {})
    key = (model.name, tp)
    if key in cache:
        return cache[key]
    n = model.num_layers
    series = {name: [0.0] * n for name in ("dense_plain", "dense_quant", "expert_plain", "expert_quant")}
    params: dict[str, dict[str, list[float]]] = {"dense": {}, "expert": {}}
    head = {"plain": 0.0, "quant": 0.0}
    head_params: dict[str, float] = {}
    families = _families(mix)
    kinds: dict[str, str] = {}
    for item in weights.tensors:
        tensor = item.tensor
        if tensor.layer is None and tensor.kind == "token_embd" and not model.tie_word_embeddings:
            continue
        share = estimate_shard_fraction(tensor, model, tp)
        family = families.get(item.format_id, "gguf")
        quantised = item.bits_per_weight < PLAIN_BITS and family in QUANTISED_FAMILIES
        kinds[item.format_id] = family if quantised or family != "gguf" else "float"  # F16/F32 GGUF multiply as floats
        kind = "quant" if quantised else "plain"
        if tensor.layer is None:
            head[kind] += item.bytes * share
            head_params[item.format_id] = head_params.get(item.format_id, 0.0) + tensor.params * share
            continue
        group = "expert" if tensor.component == "experts" else "dense"
        series[f"{group}_{kind}"][tensor.layer] += item.bytes * share
        params[group].setdefault(item.format_id, [0.0] * n)[tensor.layer] += tensor.params * share
    reads = _Reads(
        **{name: _prefix(values) for name, values in series.items()},
        dense_params={f: _prefix(v) for f, v in sorted(params["dense"].items())},
        expert_params={f: _prefix(v) for f, v in sorted(params["expert"].items())},
        head_plain=head["plain"], head_quant=head["quant"], head_params=dict(sorted(head_params.items())), families=kinds,
    )
    cache[key] = reads
    return reads


def estimate_stage_step_time(
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
    load: StepLoad,
    experts_only: bool = False,
    experts_elsewhere: range = range(0),
) -> StageTime:
    """One forward pass of `load` on one rank of a stage holding `layers`: each layer costs the
    engine's per-layer launch overhead (more for an MoE layer), and the first stage also pays its
    fixed per-step cost. `experts_only`: only the routed experts of `layers` (what a host holding
    them does, estimate/host.py); `experts_elsewhere`: layers whose routed experts another device
    runs."""
    reads = _per_layer_reads(weights, model, mix, tensor_parallel_size)
    a, b = layers.start, layers.stop
    tokens = load.tokens
    touched = estimate_expert_fraction_touched(model, tokens)
    per_token = estimate_expert_fraction_touched(model, 1)
    dense_plain = reads.dense_plain[b] - reads.dense_plain[a] + (reads.head_plain if last else 0.0)
    dense_quant = reads.dense_quant[b] - reads.dense_quant[a] + (reads.head_quant if last else 0.0)
    e0, e1 = max(a, experts_elsewhere.start), min(b, experts_elsewhere.stop)
    gone = (lambda prefix: prefix[e1] - prefix[e0]) if e1 > e0 else (lambda prefix: 0.0)
    expert_bytes_plain = touched * (reads.expert_plain[b] - reads.expert_plain[a] - gone(reads.expert_plain))
    expert_bytes_quant = touched * (reads.expert_quant[b] - reads.expert_quant[a] - gone(reads.expert_quant))
    kv_sum, flops_sum = _attention_sums(weights, model, mix, tensor_parallel_size, load.context)
    kv = load.decode * (kv_sum[b] - kv_sum[a])
    if experts_only:
        dense_plain = dense_quant = kv = 0.0
    bandwidth = gb_s_to_bytes_s(device.memory_bandwidth_gb_s)
    plain_bw = bandwidth * calibration.plain_bandwidth_efficiency
    quant_bw = bandwidth * calibration.quantized_bandwidth_efficiency
    moe = calibration.moe_kernel_efficiency
    kv_bw = bandwidth * (calibration.kv_bandwidth_efficiency or calibration.plain_bandwidth_efficiency)
    memory_s = (dense_plain / plain_bw + kv / kv_bw + dense_quant / quant_bw
                + expert_bytes_plain / (plain_bw * moe) + expert_bytes_quant / (quant_bw * moe))
    speed_class = calibration.engine_class
    quantised_efficiency = calibration.quantized_compute_efficiency or calibration.compute_efficiency
    compute_s = 0.0
    flops = 0.0

    def product(format_id: str, f: float, share: float = 1.0) -> float:
        family = reads.families.get(format_id, "float")
        efficiency = quantised_efficiency if family in QUANTISED_FAMILIES else calibration.compute_efficiency
        return f / (tflops_to_flops(estimate_matmul_tflops(device, family, speed_class)) * efficiency * share)

    for format_id, prefix in ({} if experts_only else reads.dense_params).items():
        f = 2 * tokens * (prefix[b] - prefix[a] + (reads.head_params.get(format_id, 0.0) if last else 0.0))
        flops += f
        compute_s += product(format_id, f)
    for format_id, prefix in ({} if experts_only else reads.head_params).items():
        if last and format_id not in reads.dense_params:
            f = 2 * tokens * prefix
            flops += f
            compute_s += product(format_id, f)
    for format_id, prefix in reads.expert_params.items():
        f = 2 * tokens * per_token * (prefix[b] - prefix[a] - gone(prefix))
        flops += f
        compute_s += product(format_id, f, moe)  # grouped expert kernels reach a smaller share of the peak
    attention = 0.0 if experts_only else load.decode * (flops_sum[b] - flops_sum[a])
    if load.prefill and not experts_only:
        _, prompt_flops = _attention_sums(weights, model, mix, tensor_parallel_size, max(1, load.prefill_position))
        attention += load.prefill * (prompt_flops[b] - prompt_flops[a])
    flops += attention
    compute_s += attention / (tflops_to_flops(device.bf16) * calibration.compute_efficiency)
    overhead = (calibration.step_overhead_s if first and not experts_only else 0.0) + calibration.layer_overhead_s * len(layers)
    if model.moe is not None and calibration.moe_layer_overhead_s:
        overhead += calibration.moe_layer_overhead_s * sum(1 for i in layers if model.is_moe_layer(i))
    return StageTime(memory_s, compute_s, overhead, dense_plain + dense_quant + expert_bytes_plain + expert_bytes_quant, kv, flops)


def estimate_allreduce_s(message_bytes: float, ranks: int, bandwidth_gb_s: float, latency_us: float) -> float:
    """Ring all-reduce: 2(t-1)/t of the message over the link, plus 2(t-1) latencies."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * message_bytes / gb_s_to_bytes_s(bandwidth_gb_s) + 2 * (ranks - 1) * us_to_s(latency_us)


def estimate_hop_s(message_bytes: float, bandwidth_gb_s: float, latency_us: float, calibration: SpeedCalibration,
                   *, across_machines: bool = False) -> float:
    """A pipeline hop: the activations over the link, its latency and the engine's synchronisation
    (across machines its network transport's: llama.cpp's RPC, MLX's ring, NCCL over sockets)."""
    overhead = calibration.network_hop_overhead_s if across_machines else calibration.hop_overhead_s
    return message_bytes / gb_s_to_bytes_s(bandwidth_gb_s) + us_to_s(latency_us) + overhead


def calibration_class(device: HardwareSpec) -> str:
    """The device class whose fitted efficiencies apply (see HardwareSpec.calibration_class)."""
    return device.calibration_class
