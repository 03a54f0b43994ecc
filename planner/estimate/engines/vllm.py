"""vLLM V1's memory accounting, as its start-up does it.

Budget (vllm/v1/worker/gpu_worker.py determine_available_memory; v1/worker/utils.py
request_memory): each worker requests ceil(T x gpu_memory_utilization) of the total T the driver
reports (torch.cuda.mem_get_info, not the nameplate), and gives the KV cache what is left after

- the weights of its layers (plus the rotary cos/sin cache, part of "Model loading took");
- the peak of its profile run: one forward pass of max_num_batched_tokens tokens and, on the last
  pipeline stage, the sampler over min(max_num_seqs, max_num_batched_tokens) dummy requests
  (gpu_model_runner.py profile_run, _dummy_sampler_run);
- non-torch memory created after its baseline snapshot (communication and attention workspaces);
- from 0.20, the CUDA-graph memory it estimates before capturing (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS).

Blocks (v1/core/kv_cache_planning.py): layers are grouped by attention type (hybrid models get
equal-size groups, padded); a block id reserves one page in every group; each worker's blocks are
its free memory over its bytes per block, and every worker gets the smallest worker's count
(get_kv_cache_configs). A request needs cdiv(max_model_len, block) blocks in a full-attention
group, and a sliding window plus the tokens in flight in a sliding one; the start-up log prints
"GPU KV cache size: N tokens" and "Maximum concurrency for C tokens per request: Yx".

Version rules live in VllmRules: the figures changed between releases, and the accuracy test
replays real start-up logs of many versions (tests/data/vllm_startup_logs.yaml).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.estimate.activations import ACTIVATION_BYTES
from planner.estimate.attention import LayerAttention
from planner.estimate.engines.base import (
    EngineSettings,
    KVCapacity,
    KVLayout,
    longest_fitting,
)
from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Device
from planner.schemas.model import ModelSpec
from planner.estimate.engine import estimate_reported_bytes
from planner.schemas.serving import ServeRequest
from planner.units import GiB

DEFAULT_BLOCK_SIZE = 16  # CacheConfig.DEFAULT_BLOCK_SIZE (vllm/config/cache.py)
# Memory in use before vLLM's baseline snapshot (CUDA context, NCCL and cuBLAS handles); it must
# fit beside the requested share or start-up fails ("Free memory on device ... is less than
# desired GPU memory utilization"). Free-at-start gaps in the logs: 0.61 GiB (H100, v0.10.2),
# 0.41 (A100-SXM4-80GB, v0.26), 0.44 (24 GB card, v0.10.2).
CONTEXT_BYTES = int(0.5 * GiB)
# Non-torch memory one worker adds after the snapshot at TP1: 0.02-0.14 GiB in the logs (H100
# 0.07 twice, RTX PRO 6000 0.06, 24 GB card 0.02, 16 GB card 0.02, H100 0.13-0.14 in llm-d's runs).
NON_TORCH_BYTES = int(0.07 * GiB)
# Sampler peak per logit of the dummy sampler run (n = min(max_num_seqs, max_num_batched_tokens)
# rows of the vocabulary), bf16 logits included. Through 0.15 the top-k/top-p path sorts
# (v1/sample/ops/topk_topp_sampler.py apply_top_k_top_p): the logits and their fp32 copy (2 + 4),
# sorted values and int64 indices (12), masks and softmax (6), the out-of-place scatter (4), and
# inside torch.sort its reverse indices (8) and CUB's alternate buffers: about 38 B. Logs: 5.58 to
# 5.64 GiB peak for 1,024 x 151,936 logits on H100 (9.6 fp32 copies). From 0.17 batches of 8 or
# more go to a Triton kernel that masks in place (2 + 4 + 4 + 4 = 14 B), and from 0.22 FlashInfer's
# sampler (about 14 B) is the default.
SORT_SAMPLER_BYTES = 38.0
FUSED_SAMPLER_BYTES = 14.0
# Non-torch memory tensor parallelism adds after the snapshot. Through 0.10 the snapshot came
# before NCCL was set up (v1/worker/gpu_worker.py init_device), so its buffers count: 7.9 GiB of
# peak plus non-torch at TP8 on H100 against a 5.6 GiB sampler peak (two vLLM 0.10.0 logs), about
# 0.28 GiB per extra rank. From 0.11 NCCL warms up before it, and what remains (custom all-reduce,
# algorithms first used in the profile run) measured 0.47-0.48 GiB at TP2 in llm-d's H100 runs and
# about 0.2 in a 0.12 log.
NCCL_PER_RANK_BYTES = int(0.28 * GiB)
COMM_AFTER_WARMUP_BYTES = int(0.35 * GiB)
# Estimated CUDA-graph memory per element of the largest captured batch's hidden states per layer:
# 0.51 GiB for Phi-3-mini (512 x 32 x 3,072, v0.19.1) and 1.29 GiB for Qwen2.5-Coder-14B (512 x 48
# x 5,120, v0.19.1) give 10.9 B; Qwen3-30B-A3B at 128 x 48 x 2,048 (v0.22.1) logged 0.14 against
# 0.128 predicted.
GRAPH_BYTES_PER_ELEMENT = 10.9


def parse_version(text: str) -> tuple[int, int, int]:
    """"0.10.1.1", "0.26.1rc1.dev156+g0eec856" -> (0, 10, 1)."""
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits) if digits else 0)
        if digits != piece:
            break
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class VllmRules:
    """What changed between vLLM releases, each with where it was read."""

    version: tuple[int, int, int]

    @property
    def gpu_memory_utilization(self) -> float:
        # config/cache.py: 0.9 through 0.19.x, 0.92 from 0.20.0 (PR #38284; both PyPI wheels read).
        return 0.92 if self.version >= (0, 20, 0) else 0.9

    @property
    def subtracts_graph_estimate(self) -> bool:
        # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1 from 0.20.0 (envs.py; PR #38284);
        # 0.19 computes the estimate and only logs it.
        return self.version >= (0, 20, 0)

    @property
    def sampler_bytes_per_logit(self) -> float:
        # The sort path through 0.15 (FlashInfer where it happened to be installed before 0.11.2);
        # Triton for 8+ rows from 0.17, FlashInfer by default from 0.22 (VLLM_USE_FLASHINFER_SAMPLER).
        return FUSED_SAMPLER_BYTES if self.version >= (0, 17, 0) else SORT_SAMPLER_BYTES

    @property
    def nccl_after_snapshot(self) -> bool:
        # init_device takes the baseline snapshot before NCCL through 0.10.2, after it from 0.11.0.
        return self.version < (0, 11, 0)

    @property
    def in_flight_batches(self) -> int:
        # VllmConfig.max_in_flight_tokens = max_concurrent_batches x max_num_batched_tokens with
        # async scheduling (on by default in 0.33, config/vllm.py); earlier releases reserved one
        # batch beyond a sliding window (kv_cache_utils.py SlidingWindowSpec).
        return 2 if self.version >= (0, 20, 0) else 1

    @property
    def tokens_from_concurrency(self) -> bool:
        # "GPU KV cache size" is int(max_concurrency x max_model_len) from 0.22 (kv_cache_utils.py
        # get_kv_cache_capacity); num_blocks // kv-cache groups x block_size before.
        return self.version >= (0, 22, 0)

    @property
    def largest_tier(self) -> bool:
        # get_batch_defaults' >= 160 GiB tier (16,384 tokens) is in 0.33 (engine/arg_utils.py).
        return self.version >= (0, 33, 0)


def cuda_total_bytes(spec: HardwareSpec, memory_bytes: int) -> float:
    """T: what the driver reports for the device (estimate/engine.py estimate_reported_bytes)."""
    return estimate_reported_bytes(spec, memory_bytes)


def batch_defaults(rules: VllmRules, spec: HardwareSpec, total_bytes: float) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) that `vllm serve` picks for a device
    (EngineArgs.get_batch_defaults, vllm/engine/arg_utils.py): the H100 tier from 70 GiB unless
    the name says A100 or the device is a GB10; 16,384 tokens from 160 GiB; else 2,048 / 256."""
    name = f"{spec.id} {spec.name}".lower()
    gb10 = spec.compute_capability == "12.1"
    if rules.largest_tier and total_bytes >= 160 * GiB:
        return 16384, 1024
    if total_bytes >= 70 * GiB and "a100" not in name and not gb10:
        return 8192, 1024
    return 2048, 256


def mxfp4_expert_factor(model: ModelSpec, spec: HardwareSpec | None, tp: int) -> float:
    """How much MXFP4 expert matrices grow when vLLM pads them for its MoE kernels
    (model_executor/layers/fused_moe/oracle/mxfp4.py mxfp4_round_up_hidden_size_and_intermediate_size):
    the per-rank intermediate size and the hidden size rounded up to 128, the hidden size to 256 on
    the Marlin kernels that run MXFP4 below compute capability 9.0. gpt-oss (2,880 wide) loads
    17.22 GiB per rank at TP4 on A100 (Marlin: 768 x 3,072 for 720 x 2,880) and 13.47 GiB on one
    H100, against 15.3 and 12.8 unpadded."""
    if model.moe is None:
        return 1.0
    hidden = model.hidden_size
    inner = model.moe.expert_intermediate_size / tp
    marlin = spec is not None and spec.vendor == "nvidia" and spec.compute_capability is not None \
        and float(spec.compute_capability) < 9.0
    hidden_to = 256 if marlin else 128
    return (math.ceil(hidden / hidden_to) * hidden_to / hidden) * (math.ceil(inner / 128) * 128 / inner)


def capture_sizes(max_sequences: int) -> list[int]:
    """CUDA-graph batch sizes captured by default (vllm/config/compilation.py): 1, 2, 4, then
    every 8 to 248, then every 16, up to min(2 x max_num_seqs, 512)."""
    largest = min(2 * max_sequences, 512)
    sizes = [s for s in [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)] if s <= largest]
    return sizes or [1]


class VllmMemory:
    """vLLM's memory model (module docstring) for one version."""

    id = "vllm"

    def __init__(self, version: str, enforce_eager: bool = False) -> None:
        self.version = version
        self.rules = VllmRules(parse_version(version))
        self.enforce_eager = enforce_eager

    # ---------------------------------------------------------------- settings and budget

    def settings(self, device: Device | None, request: ServeRequest, *, model: ModelSpec | None = None, tp: int = 1,
                 pp: int = 1) -> EngineSettings:
        """Defaults by version and device (the small tier when no device is given, as when vLLM
        cannot query one), the user's flags over them, and the memory share lowered when memory
        held elsewhere would not leave it free."""
        if device is None:
            total, (tokens, seqs), held = 0.0, (2048, 256), 0
        else:
            total = cuda_total_bytes(device.spec, device.memory_bytes)
            tokens, seqs = batch_defaults(self.rules, device.spec, total)
            held = device.memory_bytes - device.usable_bytes  # reserved or used by other work
        tokens = request.prefill_chunk or tokens
        seqs = request.max_sequences or seqs
        notes: list[str] = []
        fraction = request.gpu_memory_utilization or self.rules.gpu_memory_utilization
        if held > 0 and math.ceil(total * fraction) + held + CONTEXT_BYTES > total:
            lowered = math.floor((total - held - CONTEXT_BYTES) / total * 100) / 100
            if lowered < fraction:
                notes.append(f"gpu_memory_utilization lowered to {lowered:.2f}: {held / GiB:,.1f} GiB is in use elsewhere")
                fraction = max(lowered, 0.01)
        padding = mxfp4_expert_factor(model, device.spec if device else None, tp) if model is not None else 1.0
        return EngineSettings(memory_fraction=fraction, batch_tokens=tokens, max_sequences=seqs,
                              block_size=request.block_size or DEFAULT_BLOCK_SIZE,
                              cuda_graphs=not self.enforce_eager,
                              kv_cache_memory_bytes=request.kv_cache_memory_bytes, mxfp4_expert_factor=padding,
                              notes=tuple(notes))

    def capacity_bytes(self, device: Device, settings: EngineSettings) -> float:
        """The share a worker requests: ceil(T x gpu_memory_utilization); with
        --kv-cache-memory-bytes the share is ignored and the device must hold it all in what is free.
        vLLM refuses to start when less than the share is free (v1/worker/gpu_worker.py: "Free
        memory on device ... is less than desired GPU memory utilization"): a share larger than
        what memory held elsewhere leaves is capped at that, so the shortfall shows."""
        total = cuda_total_bytes(device.spec, device.memory_bytes)
        free = total - (device.memory_bytes - device.usable_bytes) - CONTEXT_BYTES
        if settings.kv_cache_memory_bytes is not None:
            return free
        assert settings.memory_fraction is not None
        return float(min(math.ceil(total * settings.memory_fraction), free))

    # ---------------------------------------------------------------- the profile run

    def activation_bytes(self, model: ModelSpec, peak_elements: float, *, last: bool, users: int, context: int,
                         settings: EngineSettings) -> float:
        """The profile run's peak: a forward pass of max_num_batched_tokens (capped at
        max_num_seqs x max_model_len, as vLLM caps it), or on the last stage the dummy sampler's
        pass over min(max_num_seqs, tokens) requests if that is larger."""
        seqs = settings.sequences(users)
        tokens = min(settings.batch_tokens, seqs * context)
        forward = tokens * peak_elements * ACTIVATION_BYTES
        if not last:
            return forward
        # The sampler runs after the forward pass has freed its activations; its hidden states stay.
        sampler = min(seqs, tokens) * model.vocab_size * self.rules.sampler_bytes_per_logit
        return max(forward, sampler + tokens * model.hidden_size * ACTIVATION_BYTES)

    def overhead_bytes(self, model: ModelSpec, *, layers: int, tp: int, settings: EngineSettings,
                       reserve_bytes: int | None) -> float:
        """Non-torch memory (or --runtime-reserve-gib in its place), the rotary cache and (0.20+,
        with CUDA graphs) the graph estimate."""
        rotary = model.max_context * rotary_dim(model) * 2  # cos/sin cache in the model dtype
        graphs = 0.0
        if settings.cuda_graphs and self.rules.subtracts_graph_estimate:
            graphs = GRAPH_BYTES_PER_ELEMENT * max(capture_sizes(settings.max_sequences)) * layers * model.hidden_size
        non_torch = NON_TORCH_BYTES + self.comm_bytes(tp) if reserve_bytes is None else reserve_bytes
        return non_torch + rotary + graphs

    def comm_bytes(self, tp: int) -> float:
        """Communication buffers counted in the budget (module constants)."""
        if tp <= 1:
            return 0.0
        return NCCL_PER_RANK_BYTES * (tp - 1) if self.rules.nccl_after_snapshot else COMM_AFTER_WARMUP_BYTES

    # ---------------------------------------------------------------- the cache

    def kv_layout(self, model: ModelSpec, attention: tuple[LayerAttention, ...], *, context: int,
                  settings: EngineSettings, pipeline_stages: int) -> KVLayout:
        groups, caps, extra = vllm_groups(attention, settings.batch_tokens * self.in_flight(pipeline_stages))
        return KVLayout(attention, groups, caps, extra, context=context, block_size=settings.block_size, pooled=True)

    def kv_bytes(self, layout: KVLayout, start: int, stop: int, users: int, settings: EngineSettings) -> float:
        """Users x the blocks one request takes x the bytes of a block on these layers."""
        return users * layout.request_bytes(start, stop)

    def in_flight(self, pipeline_stages: int) -> int:
        """Concurrent batches (VllmConfig.max_concurrent_batches): pp stages, 2 with async scheduling."""
        batches = self.rules.in_flight_batches
        return max(batches, pipeline_stages) if batches > 1 else 1

    def capacity(self, model: ModelSpec, layout: KVLayout, stages: list[tuple[range, float]], *, context: int,
                 users: int, settings: EngineSettings) -> KVCapacity:
        """What the start-up log prints, for stages of (layers, free bytes) on one rank each (the
        explicit KV budget in place of the free bytes when one is given)."""
        budget = settings.kv_cache_memory_bytes
        blocks = min((layout.blocks(free if budget is None else min(free, budget), r.start, r.stop) for r, free in stages),
                     default=0)
        per_request = layout.blocks_per_request
        concurrency = blocks / per_request if per_request else 0.0
        if self.rules.tokens_from_concurrency:
            tokens = int(concurrency * context)
        else:
            tokens = blocks // max(1, len(layout.groups)) * layout.block_size
        longest = longest_fitting(layout.request_blocks, blocks, 1, model.max_context)
        return KVCapacity(kv_cache_tokens=max(0, tokens), max_concurrency=concurrency,
                          max_users=int(concurrency + 1e-9), longest_sequence_tokens=max(0, longest))


def rotary_dim(model: ModelSpec) -> int:
    """Width of the rotary cos/sin cache per position."""
    return model.mla.qk_rope_head_dim if model.mla is not None else model.head_dim


def vllm_groups(attention: tuple[LayerAttention, ...], in_flight_tokens: int
                ) -> tuple[list[list[int]], list[int | None], list[bool]]:
    """KV-cache groups as vLLM forms them (kv_cache_planning.py _get_kv_cache_groups_uniform_page_size):
    layers bucketed by spec; with several buckets, each split into groups of the smallest bucket's
    size (the largest's when it is under 1.5 times the smallest), layers[i::n] to the i-th group.
    With each group: the most tokens a request holds there (kv_cache_interface.py
    max_admission_blocks_per_request): a sliding window less one plus the tokens in flight, with one
    more block because the window need not start on a block boundary; a chunk plus the tokens in
    flight; None (the context) for full attention and MLA."""
    buckets: dict[tuple, list[int]] = {}
    for i, layer in enumerate(attention):
        buckets.setdefault((layer.kind, layer.window, layer.bytes_per_token), []).append(i)
    specs = list(buckets)
    members = [buckets[k] for k in specs]
    caps: list[int | None] = []
    extra: list[bool] = []
    for kind, window, _ in specs:
        if kind == "sliding" and window is not None:
            caps.append(window - 1 + in_flight_tokens)
            extra.append(True)
        elif kind == "chunked" and window is not None:
            caps.append(window + in_flight_tokens)
            extra.append(False)
        else:
            caps.append(None)
            extra.append(False)
    if len(members) == 1:
        return members, caps, extra
    smallest = min(len(m) for m in members)
    largest = max(len(m) for m in members)
    group_size = largest if largest < smallest * 1.5 else smallest
    groups: list[list[int]] = []
    group_caps: list[int | None] = []
    group_extra: list[bool] = []
    for layers, cap, more in zip(members, caps, extra):
        n = math.ceil(len(layers) / group_size)
        for i in range(n):
            groups.append(layers[i::n])
            group_caps.append(cap)
            group_extra.append(more)
    return groups, group_caps, group_extra
