"""llama.cpp's, SGLang's and MLX's own memory accounting (planner/estimate/engines/), checked
against numbers the engines printed (tests/data/engine_startup_logs.yaml) and their source rules."""

from __future__ import annotations

import pytest
import yaml

from planner.estimate.attention import build_layer_attention
from planner.estimate.engines import build_engine_memory
from planner.estimate.engines.sglang import (
    SglangMemory,
    mem_fraction_static,
    prefill_graph_sizes,
)
from planner.loaders.catalog import load_model
from planner.loaders.formats import resolve_kv_format
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.hf_config import build_model_spec
from planner.schemas.inventory import Device
from planner.schemas.serving import ServeRequest
from tests.conftest import DATA, engine

MiB, GiB = 2**20, 2**30
LOGS = yaml.safe_load((DATA / "engine_startup_logs.yaml").read_text())


def _model(entry: dict):
    if "config" in entry:
        return build_model_spec(entry["config"], name=entry["model_name"], source=entry["source"])
    return load_model(entry["model"])


def _device(spec_id: str, held_gib: float = 0.0) -> Device:
    spec = load_hardware_catalog()[spec_id]
    memory = int(spec.memory_gib * GiB)
    return Device(id="n/gpu0", node="n", index=0, spec=spec, memory_bytes=memory, usable_bytes=memory - int(held_gib * GiB))


@pytest.mark.parametrize("entry", LOGS["llama_cpp"], ids=lambda e: e["model_name"][:40])
def test_llama_cpp_buffers_match_its_logs(entry: dict) -> None:
    """KV buffer: cells x layers x KV heads x head_dim x K,V x bytes; compute buffer: the ubatch's
    logits and hidden state on the output device, a block's activations elsewhere."""
    model = _model(entry)
    memory = build_engine_memory(engine("llama.cpp"))
    settings = memory.settings(None, ServeRequest(context=entry["n_ctx"], prefill_chunk=entry["n_ubatch"]), model=model)
    attention = build_layer_attention(model, resolve_kv_format(entry["kv_cache"]), 1)
    layout = memory.kv_layout(model, attention, context=entry["n_ctx"], settings=settings, pipeline_stages=1)
    kv = memory.kv_bytes(layout, 0, model.num_layers, 1, settings)
    assert kv / MiB == pytest.approx(entry["printed"]["kv_mib"], abs=0.01)
    compute = memory.activation_bytes(model, 0.0, last=True, users=1, context=entry["n_ctx"], settings=settings)
    assert compute / MiB == pytest.approx(entry["printed"]["compute_mib"], rel=0.01)
    if "compute_mib_other_devices" in entry["printed"]:
        other = memory.activation_bytes(model, 0.0, last=False, users=1, context=entry["n_ctx"], settings=settings)
        assert other / MiB == pytest.approx(entry["printed"]["compute_mib_other_devices"], rel=0.03)


def test_llama_cpp_context_is_the_total_over_slots() -> None:
    """-c for 4 slots of 3,000 tokens is 12,000, padded to 256 cells (src/llama-context.cpp); a
    sliding-window layer keeps n_swa x slots + n_ubatch cells (src/llama-kv-cache-iswa.cpp)."""
    model = load_model("gemma-3-27b")
    memory = build_engine_memory(engine("llama.cpp"))
    settings = memory.settings(None, ServeRequest(context=3000), model=model)
    layout = memory.kv_layout(model, build_layer_attention(model, resolve_kv_format("fp16"), 1), context=3000,
                              settings=settings, pipeline_stages=1)
    full = next(g for g, cap in enumerate(layout.caps) if cap is None)
    sliding = next(g for g, cap in enumerate(layout.caps) if cap is not None)
    assert memory.cells(layout, full, 4, settings) == 12032
    assert memory.cells(layout, sliding, 4, settings) == min(12032, -(-(1024 * 4 + 512) // 256) * 256)
    capacity = memory.capacity(model, layout, [(range(62), 8 * GiB)], context=3000, users=4, settings=settings)
    assert capacity.kv_cache_tokens % 256 == 0 and capacity.max_users >= 1
    assert memory.capacity_bytes(_device("rtx-3090", held_gib=1.0), settings) == pytest.approx((23.58 - 1.0 - 0.3) * GiB, abs=2)


@pytest.mark.parametrize("entry", LOGS["sglang"], ids=lambda e: e["model_name"][:40])
def test_sglang_token_pool_matches_its_logs(entry: dict) -> None:
    """The pool is what was free before loading x mem_fraction_static, less the weights, over the
    bytes a token takes on the rank (mem_cache/kv_cache_configurator.py)."""
    model = _model(entry)
    printed = entry["printed"]
    tp = entry["tensor_parallel_size"]
    attention = build_layer_attention(model, resolve_kv_format("bf16"), tp)
    memory = SglangMemory("0.5.23")
    settings = memory.settings(None, ServeRequest(gpu_memory_utilization=entry["mem_fraction_static"]), model=model, tp=tp)
    layout = memory.kv_layout(model, attention, context=4096, settings=settings, pipeline_stages=1)
    free = printed["free_before_load_gib"] * GiB * entry["mem_fraction_static"] - printed["weights_gib"] * GiB
    capacity = memory.capacity(model, layout, [(range(model.num_layers), free)], context=4096, users=1, settings=settings)
    per_token = 0.005 * GiB * 2 / memory.pool_bytes_per_full_token(layout, 0, model.num_layers)  # the GB figures' rounding
    assert abs(capacity.kv_cache_tokens - printed["tokens"]) <= per_token + 1


def test_sglang_memory_fraction_follows_its_formula() -> None:
    """handle_gpu_memory_settings on an 80 GiB H100 at TP1: chunk 8,192, decode graphs to 256,
    58 prefill graph sizes: 512 + 12,288 + 128 + 512 + 464 MiB reserved."""
    h100 = _device("h100-sxm")
    settings = SglangMemory("0.5.23").settings(h100, ServeRequest(), model=load_model("llama-3.1-8b"))
    gpu_mib = 79.18 * 1024
    assert prefill_graph_sizes(8192) == 58
    assert settings.memory_fraction == round((gpu_mib - (512 + 12288 + 128 + 512 + 464)) / gpu_mib, 3)
    assert settings.batch_tokens == 8192 and settings.max_sequences == 256
    small = SglangMemory("0.5.23").settings(_device("rtx-4090"), ServeRequest(), model=load_model("llama-3.1-8b"))
    assert small.batch_tokens == 4096 and small.memory_fraction == mem_fraction_static(23.52 * 1024, 4096, 48, 1, 1, False)
    mla = SglangMemory("0.5.23").settings(h100, ServeRequest(), model=load_model("deepseek-v2-lite"))
    assert mla.memory_fraction < settings.memory_fraction  # 1.5 GiB for MLA prefill graphs


def test_sglang_sliding_window_pools_hold_four_fifths() -> None:
    """Sliding layers get swa_full_tokens_ratio (0.8) of the full pool's tokens, so a long request
    pays in the full pool and a short one can be bound by the sliding pool."""
    model = load_model("gemma-3-27b")
    memory = SglangMemory("0.5.23")
    settings = memory.settings(None, ServeRequest(), model=model)
    layout = memory.kv_layout(model, build_layer_attention(model, resolve_kv_format("bf16"), 1), context=32768,
                              settings=settings, pipeline_stages=1)
    cell = memory.pool_bytes_per_full_token(layout, 0, 62)
    full_bytes = sum(layer.bytes_per_token for layer in layout.attention if layer.window is None)
    swa_bytes = sum(layer.bytes_per_token for layer in layout.attention if layer.window is not None)
    assert cell == pytest.approx(full_bytes + 0.8 * swa_bytes)
    assert memory.kv_bytes(layout, 0, 62, 2, settings) == pytest.approx(2 * 32768 * cell)


def test_mlx_caches_grow_in_steps_of_256_tokens() -> None:
    model = load_model("llama-3.1-8b")
    memory = build_engine_memory(engine("mlx-lm"))
    settings = memory.settings(None, ServeRequest(context=1000), model=model)
    layout = memory.kv_layout(model, build_layer_attention(model, resolve_kv_format("fp16"), 1), context=1000,
                              settings=settings, pipeline_stages=1)
    assert memory.kv_bytes(layout, 0, 32, 3, settings) == 3 * 1024 * 32 * 8 * 128 * 2 * 2
    mac = _device("m2-ultra-76c-192gb", held_gib=48.0)  # the wired limit
    assert memory.capacity_bytes(mac, settings) == mac.usable_bytes
