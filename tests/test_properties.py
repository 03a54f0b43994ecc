"""Property tests over random small models: the accounting is internally consistent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.estimate.kv_cache import estimate_kv_cache_bytes
from planner.estimate.memory import estimate_serving_memory
from planner.estimate.parameters import estimate_model_tensors, estimate_parameters
from planner.estimate.weights import estimate_weight_bytes
from planner.loaders.hf_config import build_model_spec
from planner.schemas.workload import Parallelism, ServeWorkload
from tests.conftest import mix, tiny_config


@st.composite
def configs(draw):
    kv_heads = draw(st.sampled_from([1, 2, 4]))
    heads = kv_heads * draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([8, 16, 32]))
    layers = draw(st.integers(1, 8))
    config = tiny_config(
        model_type=draw(st.sampled_from(["llama", "qwen2", "qwen3", "gemma2", "mistral"])),
        hidden_size=heads * head_dim, head_dim=head_dim, num_attention_heads=heads, num_key_value_heads=kv_heads,
        num_hidden_layers=layers, intermediate_size=draw(st.sampled_from([32, 64, 96])),
        vocab_size=draw(st.integers(10, 500)), tie_word_embeddings=draw(st.booleans()),
    )
    if config["model_type"] == "gemma2":
        config["sliding_window"] = draw(st.integers(4, 64))
    if draw(st.booleans()):
        experts = draw(st.sampled_from([2, 4, 8]))
        config.update(model_type="qwen3_moe", num_experts=experts, num_experts_per_tok=draw(st.integers(1, experts)),
                      moe_intermediate_size=draw(st.sampled_from([16, 32])), decoder_sparse_step=draw(st.integers(1, 2)))
    return config


def _model(config):
    return build_model_spec(config, name="random", source="hypothesis")


@settings(max_examples=60, deadline=None)
@given(configs())
def test_components_tensors_and_fp32_bytes_agree(config) -> None:
    model = _model(config)
    counts = estimate_parameters(model)
    assert counts.total_parameters == sum(t.params for t in estimate_model_tensors(model))
    assert counts.active_parameters <= counts.total_parameters
    weights = estimate_weight_bytes(model, mix("fp32"))
    assert weights.total_bytes == 4 * counts.total_parameters
    assert sum(weights.by_layer) + weights.outer_bytes == weights.total_bytes


@settings(max_examples=60, deadline=None)
@given(configs())
def test_fewer_bits_never_weigh_more(config) -> None:
    model = _model(config)
    sizes = [estimate_weight_bytes(model, mix(f)).total_bytes for f in ("int2-g32", "int4", "int8", "bf16", "fp32")]
    assert sizes == sorted(sizes)


@settings(max_examples=60, deadline=None)
@given(configs(), st.integers(1, 4), st.integers(1, 3), st.integers(1, 500))
def test_pipeline_stages_partition_the_model(config, pp, users, context) -> None:
    model = _model(config)
    pp = min(pp, model.num_layers)
    workload = ServeWorkload(users=users, context=context, overhead_factor=0, runtime_reserve_bytes=0)
    whole = estimate_serving_memory(model, mix(), workload).peak
    split = estimate_serving_memory(model, mix(), workload, Parallelism(pipeline_parallel_size=pp))
    extra = model.vocab_size * model.hidden_size * 2 if (model.tie_word_embeddings and pp > 1) else 0
    assert abs(sum(d.weights_bytes for d in split.devices) - (whole.weights_bytes + extra)) < 1e-6
    assert abs(sum(d.kv_cache_bytes for d in split.devices) - whole.kv_cache_bytes) < 1e-6
    assert [d.layers for d in split.devices][0][0] == 0 and split.devices[-1].layers[1] == model.num_layers


@settings(max_examples=60, deadline=None)
@given(configs(), st.sampled_from([1, 2, 4]))
def test_tensor_parallel_ranks_cover_the_model(config, tp) -> None:
    model = _model(config)
    if model.num_attention_heads % tp:
        return
    whole = estimate_weight_bytes(model, mix()).total_bytes
    workload = ServeWorkload(overhead_factor=0, runtime_reserve_bytes=0)
    rank = estimate_serving_memory(model, mix(), workload, Parallelism(tensor_parallel_size=tp)).peak
    assert rank.weights_bytes * tp >= whole - 1e-6  # replication (norms, routers, KV heads) only adds
    assert rank.weights_bytes <= whole + 1e-6


@settings(max_examples=60, deadline=None)
@given(configs(), st.integers(1, 2000))
def test_kv_cache_is_monotone_in_context(config, context) -> None:
    model = _model(config)
    kv = mix().kv_cache_dtype
    assert estimate_kv_cache_bytes(model, kv, context=context, users=1) <= estimate_kv_cache_bytes(model, kv, context=context + 1, users=1)
