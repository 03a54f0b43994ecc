"""Reading config.json: unknown keys ignored, missing keys named, architecture features by field."""

from __future__ import annotations

import pytest

from planner.errors import InputError
from planner.loaders.hf_config import build_model_spec, load_model_config
from tests.conftest import reference_model, tiny_config, write_config


def test_unknown_keys_are_ignored(tmp_path) -> None:
    path = write_config(tmp_path, tiny_config(some_future_key={"x": 1}, rope_scaling={"type": "yarn"}))
    assert load_model_config(path).hidden_size == 64


def test_folder_with_config(tmp_path) -> None:
    write_config(tmp_path, tiny_config())
    assert load_model_config(tmp_path).num_layers == 4
    with pytest.raises(InputError, match="no config.json"):
        load_model_config(tmp_path / "..")


@pytest.mark.parametrize("key", ["num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"])
def test_missing_required_key_is_named(tmp_path, key: str) -> None:
    config = tiny_config()
    del config[key]
    with pytest.raises(InputError) as err:
        load_model_config(write_config(tmp_path, config))
    assert key in str(err.value) and err.value.exit_code == 2


def test_invalid_value_names_its_line(tmp_path) -> None:
    path = write_config(tmp_path, tiny_config(num_key_value_heads=3))
    with pytest.raises(InputError) as err:
        load_model_config(path)
    assert "num_key_value_heads" in str(err.value) and err.value.line is not None


def test_sliding_window_patterns() -> None:
    gemma2 = reference_model("Gemma-2-9B")
    assert gemma2.layer_types[:4] == ("sliding", "full", "sliding", "full")
    gemma3 = build_model_spec(tiny_config(model_type="gemma3_text", num_hidden_layers=12, sliding_window=1024), name="g3", source="t")
    assert gemma3.layer_types.count("full") == 2 and gemma3.layer_types[5] == "full"
    qwen2 = build_model_spec(tiny_config(model_type="qwen2", sliding_window=32, use_sliding_window=True, max_window_layers=2), name="q", source="t")
    assert qwen2.layer_types == ("full", "full", "sliding", "sliding")
    mistral = reference_model("Mistral-7B-v0.1")
    assert set(mistral.layer_types) == {"sliding"} and mistral.sliding_window == 4096


def test_multimodal_wrapper_uses_text_config() -> None:
    wrapped = {"model_type": "gemma3", "text_config": tiny_config(model_type="gemma3_text"), "vision_config": {"hidden_size": 1152}}
    assert build_model_spec(wrapped, name="g", source="t").hidden_size == 64


def test_mla_without_q_lora() -> None:
    config = tiny_config(model_type="deepseek_v2", kv_lora_rank=32, q_lora_rank=None, qk_rope_head_dim=8,
                         qk_nope_head_dim=16, v_head_dim=16)
    model = build_model_spec(config, name="mla", source="t")
    assert model.mla is not None and model.mla.q_lora_rank is None


def test_moe_needs_top_k(tmp_path) -> None:
    with pytest.raises(InputError, match="num_experts_per_tok"):
        load_model_config(write_config(tmp_path, tiny_config(num_local_experts=8)))
