"""vLLM's own memory accounting (planner/estimate/engines/vllm.py), checked against the numbers
real vLLM start-ups printed (tests/data/vllm_startup_logs.yaml, each with its source)."""

from __future__ import annotations

import json
import math

import pytest

from planner.cli.main import main
from planner.estimate.attention import build_layer_attention
from planner.estimate.engines import build_engine_memory
from planner.estimate.engines.vllm import (
    VllmMemory,
    batch_defaults,
    mxfp4_expert_factor,
    vllm_groups,
)
from planner.loaders.catalog import load_model
from planner.loaders.formats import resolve_kv_format
from planner.loaders.hardware import load_hardware_catalog
from planner.schemas.inventory import Device
from planner.schemas.serving import ServeRequest
from tests.conftest import ROOT, engine
from tests.vllm_replay import load_logs, replay_all, summary

GiB = 2**30


def _layout(model_id: str, *, tp: int, context: int, mnbt: int, version: str, kv: str = "bf16"):
    model = load_model(model_id)
    memory = VllmMemory(version)
    request = ServeRequest(context=context, prefill_chunk=mnbt)
    settings = memory.settings(None, request, model=model, tp=tp)
    attention = build_layer_attention(model, resolve_kv_format(kv), tp)
    return model, memory, settings, memory.kv_layout(model, attention, context=context, settings=settings, pipeline_stages=1)


def _device(spec_id: str, held_gib: float = 0.0) -> Device:
    spec = load_hardware_catalog()[spec_id]
    memory = int(spec.memory_gib * GiB)
    return Device(id="n/gpu0", node="n", index=0, spec=spec, memory_bytes=memory, usable_bytes=memory - int(held_gib * GiB))


def test_the_replayed_startups_meet_the_accuracy_goal() -> None:
    """`plan deploy --engine vllm` with each log's sizes pinned: the cache size vLLM printed,
    median within 5%, 90% of the logs within 15% (tests/data/vllm_startup_cases.yaml)."""
    replays = replay_all()
    result = summary(replays)
    assert result["logs"] >= 30
    assert result["median"] <= 0.05, result
    assert result["within_15"] >= 0.90, result
    # the first stage's free memory is what vLLM logs as "Available KV cache memory"
    available = sorted(abs(r.available_error) for r in replays if r.available_error is not None)
    assert available[len(available) // 2] <= 0.05


def test_hybrid_sliding_window_blocks_reproduce_the_gpt_oss_log() -> None:
    """gpt-oss-120b at TP4 on A100s (vLLM 0.10.1.1, github.com/dennislee22/vLLM-benchmarking): 18
    sliding and 18 full layers make two groups; a block is 18 pages of 8 KiB; a request of 16,384
    tokens needs 1,024 full blocks and cdiv(127 + 2,048, 16) + 1 = 137 sliding ones."""
    _, memory, settings, layout = _layout("gpt-oss-120b", tp=4, context=16384, mnbt=2048, version="0.10.1.1")
    assert len(layout.groups) == 2 and {len(g) for g in layout.groups} == {18}
    assert layout.block_bytes(0, 36) == 18 * 16 * 2 * 64 * 2 * 2  # 18 layers x (block x 2 heads/rank x 64 x K,V x bf16)
    assert layout.blocks_per_request == 1024 + 137
    model = load_model("gpt-oss-120b")
    # "Available KV cache memory: 45.32 GiB" is rounded to 0.005 GiB, 36 blocks of 144 KiB
    assert abs(layout.blocks(45.32 * GiB, 0, 36) - 330018) <= 0.005 * GiB / layout.block_bytes(0, 36)
    exact = 330018 * layout.block_bytes(0, 36)  # the log's num_gpu_blocks, in bytes
    capacity = memory.capacity(model, layout, [(range(36), exact)], context=16384, users=1, settings=settings)
    assert capacity.kv_cache_tokens == 2640144  # 330,018 // 2 groups x 16, as 0.10 printed it
    assert round(capacity.max_concurrency, 2) == 284.25


def test_gemma3_groups_pad_the_sliding_layers() -> None:
    """Gemma-3-27B: 52 sliding and 10 full layers; groups of 10 (the smaller count), so the
    sliding layers fill 6 groups, 8 of their slots padding (kv_cache_planning.py)."""
    model = load_model("gemma-3-27b")
    attention = build_layer_attention(model, resolve_kv_format("bf16"), 1)
    groups, caps, extra = vllm_groups(attention, 4096)
    sizes = sorted(len(g) for g in groups)
    assert len(groups) == 7 and sum(sizes) == 62 and max(sizes) == 10
    assert caps.count(None) == 1 and extra.count(True) == 6


def test_mla_pages_are_not_split_by_tensor_parallelism() -> None:
    """DeepSeek-V2-Lite at PP2 x TP2 on L4s (vLLM PR #20665): stage 0 holds 14 layers of a 576-value
    latent; 12.13 GiB / (14 x 1,152 B) = 807,792 tokens, the log's cache size."""
    model, memory, settings, layout = _layout("deepseek-v2-lite", tp=2, context=1024, mnbt=2048, version="0.9.2")
    assert layout.block_bytes(0, 1) == 16 * 576 * 2
    capacity = memory.capacity(model, layout, [(range(14), 12.13 * GiB), (range(14, 27), 11.33 * GiB)],
                               context=1024, users=1, settings=settings)
    per_token = 14 * 1152
    assert abs(capacity.kv_cache_tokens - 807792) <= 0.005 * GiB / per_token  # the log's GiB is rounded


def test_every_worker_gets_the_smallest_workers_blocks() -> None:
    model, memory, settings, layout = _layout("qwen3-32b", tp=1, context=8192, mnbt=2048, version="0.33.0")
    tight = memory.capacity(model, layout, [(range(32), 10 * GiB), (range(32, 64), 5 * GiB)], context=8192,
                            users=1, settings=settings)
    alone = memory.capacity(model, layout, [(range(32, 64), 5 * GiB)], context=8192, users=1, settings=settings)
    assert tight.kv_cache_tokens == alone.kv_cache_tokens and tight.max_concurrency == alone.max_concurrency


@pytest.mark.parametrize(("spec_id", "version", "expected"), [
    ("h100-sxm", "0.33.0", (8192, 1024)), ("h200", "0.10.2", (8192, 1024)), ("a100-sxm-80gb", "0.33.0", (2048, 256)),
    ("dgx-spark-gb10", "0.33.0", (2048, 256)), ("l40s", "0.33.0", (2048, 256)), ("b200", "0.33.0", (16384, 1024)),
    ("b200", "0.19.1", (8192, 1024)), ("rtx-pro-6000", "0.12.0", (8192, 1024)),
])
def test_batch_defaults_follow_the_gpu_tier(spec_id: str, version: str, expected: tuple[int, int]) -> None:
    """EngineArgs.get_batch_defaults: the H100 tier from 70 GiB unless A100 or GB10, 16,384 tokens
    from 160 GiB in 0.33."""
    memory = VllmMemory(version)
    spec = load_hardware_catalog()[spec_id]
    assert batch_defaults(memory.rules, spec, spec.cuda_reported_gib * GiB) == expected


def test_the_memory_share_default_follows_the_version() -> None:
    device = _device("h100-sxm")
    request = ServeRequest()
    assert VllmMemory("0.19.1").settings(device, request).memory_fraction == 0.9
    assert VllmMemory("0.20.0").settings(device, request).memory_fraction == 0.92
    share = VllmMemory("0.33.0").settings(device, request)
    assert share.memory_fraction == 0.92
    assert VllmMemory("0.33.0").capacity_bytes(device, share) == math.ceil(79.18 * GiB * 0.92)


def test_memory_in_use_elsewhere_lowers_the_share() -> None:
    """vLLM refuses to start when free memory is below the requested share, so the plan lowers it."""
    settings = VllmMemory("0.33.0").settings(_device("rtx-4090", held_gib=2.0), ServeRequest())
    assert settings.memory_fraction == math.floor((23.52 - 2.0 - 0.5) / 23.52 * 100) / 100
    assert settings.notes and "lowered" in settings.notes[0]


def test_an_explicit_kv_budget_replaces_the_share() -> None:
    model, memory, _, _ = _layout("llama-3.1-8b", tp=1, context=8192, mnbt=2048, version="0.33.0")
    device = _device("h100-sxm")
    settings = memory.settings(device, ServeRequest(context=8192, kv_cache_memory_bytes=4 * GiB), model=model)
    attention = build_layer_attention(model, resolve_kv_format("bf16"), 1)
    layout = memory.kv_layout(model, attention, context=8192, settings=settings, pipeline_stages=1)
    capacity = memory.capacity(model, layout, [(range(32), 60 * GiB)], context=8192, users=1, settings=settings)
    assert capacity.kv_cache_tokens == 4 * GiB // (128 * 1024) // 16 * 16 == 32768
    assert memory.capacity_bytes(device, settings) == pytest.approx(79.18 * GiB - 0.5 * GiB, abs=2)


def test_cuda_graph_memory_counts_from_0_20_without_eager() -> None:
    model = load_model("qwen2.5-14b")
    request = ServeRequest()
    old, new, eager = VllmMemory("0.19.1"), VllmMemory("0.20.0"), VllmMemory("0.20.0", enforce_eager=True)
    parts = [m.overhead_bytes(model, layers=48, tp=1, settings=m.settings(None, request, model=model),
                              reserve_bytes=None) for m in (old, new, eager)]
    assert parts[1] - parts[0] == pytest.approx(10.9 * 512 * 48 * 5120, rel=1e-9)  # the estimate, 1.25 GiB
    assert parts[2] == parts[0]


def test_the_sampler_peak_follows_the_sampler_path() -> None:
    """1,024 requests of Qwen3's 151,936-token vocabulary: 5.6 GiB on the sort path (vLLM 0.10.2
    logged 5.58-5.59 GiB), a third of it on the fused samplers."""
    model = load_model("qwen3-4b")
    request = ServeRequest(context=40960, prefill_chunk=8192, max_sequences=1024)
    sort, fused = VllmMemory("0.10.2"), VllmMemory("0.22.1")
    peak = [m.activation_bytes(model, 0.0, last=True, users=1, context=40960, settings=m.settings(None, request, model=model))
            for m in (sort, fused)]
    assert peak[0] / GiB == pytest.approx(5.59, abs=0.05)
    assert peak[1] < peak[0] / 2


def test_mxfp4_experts_are_padded_for_the_kernels() -> None:
    model = load_model("gpt-oss-120b")
    a100, h100 = load_hardware_catalog()["a100-sxm-80gb"], load_hardware_catalog()["h100-sxm"]
    assert mxfp4_expert_factor(model, a100, 4) == pytest.approx((3072 / 2880) * (768 / 720))
    assert mxfp4_expert_factor(model, h100, 1) == pytest.approx((2944 / 2880) ** 2)
    assert mxfp4_expert_factor(load_model("llama-3.1-8b"), h100, 1) == 1.0


def test_plan_deploy_reports_capacity_in_vllms_terms(runner, tmp_path) -> None:
    inventory = tmp_path / "h100.yaml"
    inventory.write_text("name: one\nnodes:\n  - name: n\n    interconnect: nvlink-4\n    devices:\n      - type: h100-sxm\n")
    result = runner.invoke(main, ["deploy", "--inventory", str(inventory), "--model", "qwen3-30b-a3b", "--engine", "vllm",
                                  "--engine-version", "0.10.2", "--context", "6144", "--gpu-memory-utilization", "0.9",
                                  "-tp", "1", "-pp", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    log = load_logs()[11]  # kolyangg/mlops-assignment: vLLM 0.10.2, H100, 94,784 tokens, 15.43x at 6,144
    capacity = plan["capacity"]
    assert capacity["kv_cache_tokens"] == pytest.approx(log["logged"]["kv_cache_tokens"], rel=0.02)
    assert capacity["max_concurrency"] == pytest.approx(log["logged"]["max_concurrency"], rel=0.02)
    assert capacity["max_users"] == int(capacity["max_concurrency"])
    assert capacity["longest_sequence_tokens"] == min(capacity["kv_cache_tokens"] // 16 * 16, 40960)
    replica = plan["replicas"][0]
    assert replica["engine"]["batch_tokens"] == 8192 and replica["engine"]["max_sequences"] == 1024
    assert plan["request"]["engine"]["version"] == "0.10.2"


@pytest.mark.parametrize("version", ["0.7.3", "0.40.0", "nightly"])
def test_an_engine_version_without_rules_is_refused(runner, version: str) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "dgx-h100.yaml"), "--model",
                                  "llama-3.1-8b", "--engine", "vllm", "--engine-version", version])
    assert result.exit_code == 2 and "--engine-version" in result.output and "Traceback" not in result.output


def test_other_engines_keep_one_version(runner) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "dgx-h100.yaml"), "--model",
                                  "llama-3.1-8b", "--engine", "sglang", "--engine-version", "0.4.0"])
    assert result.exit_code == 2 and "0.5.23" in result.output


def test_the_generic_model_is_used_without_an_engine() -> None:
    assert build_engine_memory(None).id == "generic" and build_engine_memory(engine("vllm")).version == "0.33.0"


def test_unmeasured_gpus_follow_the_measured_ones() -> None:
    """Without a measured total: the memory less the driver's 0.42 GiB, after ECC's sixteenth on
    GDDR cards that ship with it on. The rule lands within 0.5% of the measured cards it stands for."""
    from planner.estimate.engine import estimate_reported_bytes

    catalog = load_hardware_catalog()
    for measured in ("a10", "l4", "l40s", "t4", "rtx-6000-ada", "rtx-3090", "rtx-a6000"):
        spec = catalog[measured]
        rule = spec.model_copy(update={"cuda_reported_gib": None, "cuda_reported_source": None})
        predicted = estimate_reported_bytes(rule, int(spec.memory_gib * GiB)) / GiB
        assert predicted == pytest.approx(spec.cuda_reported_gib, rel=0.005), measured
    assert estimate_reported_bytes(catalog["a10g"], 24 * GiB) / GiB == pytest.approx(22.08, abs=0.01)


@pytest.mark.parametrize("spelling", [["--engine", "vllm@0.10.2"], ["--engine", "vllm==0.10.2"],
                                      ["--engine", "vllm", "--engine-version", "0.10.2"]])
def test_the_engine_version_can_be_given_with_the_engine(runner, spelling: list[str]) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "dgx-h100.yaml"), "--model",
                                  "llama-3.1-8b", *spelling, "--format", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["request"]["engine"]["version"] == "0.10.2" and plan["replicas"][0]["engine"]["memory_fraction"] == 0.9
