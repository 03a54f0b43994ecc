"""Unknown architectures are never silently wrong: a model_type the planner does not know is a
generic decoder only when every key is one it reads or knows to be inert; hybrid state-space and
linear-attention models are refused by type, by key or by layer type."""

from __future__ import annotations

import pytest

from planner.errors import InputError
from planner.estimate.attention import build_layer_attention
from planner.estimate.kv_cache import estimate_context_fitting, estimate_kv_cache_bytes
from planner.loaders.formats import resolve_kv_format
from planner.loaders.hf_config import READ_KEYS, build_model_spec, load_config_keys
from tests.conftest import tiny_config

FP16 = resolve_kv_format("fp16")

# A hand-written Jamba-style config (ai21labs/Jamba-v0.1 config.json keys): one attention layer in
# eight, the others Mamba. Accounted as all-attention it would be a 92B-style dense model.
JAMBA = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 65536, "max_position_embeddings": 262144,
    "attn_layer_period": 8, "attn_layer_offset": 4, "expert_layer_period": 2, "expert_layer_offset": 1,
    "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2, "num_experts": 16, "num_experts_per_tok": 2,
}


def build(config: dict) -> object:
    return build_model_spec(config, name="m", source="config.json")


@pytest.mark.parametrize("model_type", ["jamba", "my_hybrid", "llama"])
def test_jamba_like_configs_are_refused_whatever_their_type(model_type: str) -> None:
    with pytest.raises(InputError) as err:
        build({**JAMBA, "model_type": model_type})
    assert "state-space" in str(err.value) and err.value.exit_code == 2


@pytest.mark.parametrize("model_type", ["mamba", "mamba2", "qwen3_next", "nemotron_h", "falcon_h1", "recurrent_gemma"])
def test_hybrid_model_types_are_refused(model_type: str) -> None:
    with pytest.raises(InputError, match="state-space or linear-attention"):
        build(tiny_config(model_type=model_type))


def test_linear_attention_layer_types_are_refused() -> None:
    # Qwen3-Next lists gated-delta-net layers as linear_attention.
    config = tiny_config(layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"])
    with pytest.raises(InputError) as err:
        build(config)
    assert "layer_types.0" in str(err.value) and "recurrent state" in str(err.value)


def test_unknown_type_with_only_known_keys_is_a_generic_decoder() -> None:
    model = build(tiny_config(model_type="my_decoder", rope_theta=1e6, bos_token_id=1, hidden_act="silu"))
    assert model.num_layers == 4 and model.architecture == "my_decoder"


def test_unknown_type_with_unknown_keys_names_them() -> None:
    with pytest.raises(InputError) as err:
        build(tiny_config(model_type="my_decoder", use_qk_norm=True, shared_attention_period=2))
    message = str(err.value)
    assert "shared_attention_period" in message and "use_qk_norm" in message and "may change its tensor shapes" in message


def test_known_type_ignores_keys_it_does_not_read() -> None:
    assert build(tiny_config(model_type="llama", some_future_key=3)).num_layers == 4


def test_inert_keys_are_never_ones_the_loader_reads() -> None:
    assert not set(load_config_keys()["inert"]) & READ_KEYS


def test_chunked_local_attention_holds_at_most_its_chunk() -> None:
    config = tiny_config(layer_types=["chunked_attention", "chunked_attention", "chunked_attention", "full_attention"],
                         attention_chunk_size=64)
    model = build(config)
    layers = build_layer_attention(model, FP16)
    assert [layer.kind for layer in layers] == ["chunked", "chunked", "chunked", "full"]
    per_token = layers[0].bytes_per_token
    assert estimate_kv_cache_bytes(model, FP16, context=1000, users=1) == per_token * (3 * 64 + 1000)
    # 3 layers stop at 64 tokens, the full one keeps growing: the fitting context is piecewise linear.
    free = per_token * (3 * 64 + 500)
    assert estimate_context_fitting(list(layers), free, 512) == 500


def test_chunked_layers_need_their_chunk_size() -> None:
    with pytest.raises(InputError, match="attention_chunk_size"):
        build(tiny_config(layer_types=["chunked_attention"] * 4))


@pytest.mark.parametrize(("changes", "key"), [
    ({"num_key_value_heads": 0}, "num_key_value_heads"),
    ({"num_hidden_layers": "32"}, "num_hidden_layers"),
    ({"hidden_size": float("nan")}, "hidden_size"),
    ({"num_hidden_layers": 10**6}, "num_hidden_layers"),
    ({"layer_types": 5}, "layer_types"),
    ({"kv_lora_rank": 512}, "kv_lora_rank"),
    ({"num_local_experts": 4, "num_experts_per_tok": 8, "moe_intermediate_size": 32}, "num_experts_per_tok"),
    ({"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
    ({"model_type": 5}, "model_type"),
])
def test_bad_values_name_their_key(changes: dict, key: str) -> None:
    with pytest.raises(InputError) as err:
        build(tiny_config(**changes))
    assert key in str(err.value)
