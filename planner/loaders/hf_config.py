"""Turn a Hugging Face config.json (a file, a folder holding one, or a dict) into a ModelSpec."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from planner.errors import InputError
from planner.loaders.yamlfile import Located, parse_json_text, parse_yaml_text, read_text
from planner.schemas.model import MLASpec, ModelSpec, MoESpec

# Generic spellings of each field across model families, tried in order.
_LAYERS = ("num_hidden_layers", "n_layer", "num_layers")
_HIDDEN = ("hidden_size", "n_embd", "d_model")
_HEADS = ("num_attention_heads", "n_head", "num_heads")
_EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_TOP_K = ("num_experts_per_tok", "experts_per_token", "moe_topk", "top_k")
_CONTEXT = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_WINDOW = ("sliding_window", "sliding_window_size")  # the second is MLC's spelling
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


@functools.cache
def load_architecture_traits() -> dict[str, dict[str, Any]]:
    """The per-model_type traits table shipped with the package."""
    text = resources.files("planner.catalog").joinpath("architectures.yaml").read_text(encoding="utf-8")
    return parse_yaml_text(text, "planner/catalog/architectures.yaml").data


def _first(config: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def _trait(traits: dict[str, Any], name: str, config: dict[str, Any], default: Any) -> Any:
    value = traits.get(name, load_architecture_traits()["generic"].get(name, default))
    if isinstance(value, dict) and "key" in value:
        found = config.get(value["key"])
        return value.get("default", default) if found is None else found
    return value


def _layer_types(config: dict[str, Any], traits: dict[str, Any], num_layers: int, located: Located) -> tuple[str, ...]:
    window = _first(config, _WINDOW)
    if not window or config.get("use_sliding_window") is False:
        return ()
    listed = config.get("layer_types")
    if listed:
        mapping = {"sliding_attention": "sliding", "full_attention": "full", "sliding": "sliding", "full": "full"}
        out = []
        for index, kind in enumerate(listed):
            if kind not in mapping:
                raise located.error(("layer_types", index), f"unknown layer type '{kind}'; expected sliding_attention or full_attention")
            out.append(mapping[kind])
        return tuple(out)
    pattern = config.get("sliding_window_pattern") or traits.get("sliding_window_pattern_default")
    if pattern:
        # Gemma: in every run of `pattern` layers the last one is global, the rest slide.
        return tuple("full" if i % pattern == pattern - 1 else "sliding" for i in range(num_layers))
    max_window_layers = config.get("max_window_layers")
    if config.get("use_sliding_window") and max_window_layers is not None:
        # Qwen2: layers from max_window_layers on use the sliding window.
        return tuple("sliding" if i >= max_window_layers else "full" for i in range(num_layers))
    return tuple("sliding" for _ in range(num_layers))


def _require(config: dict[str, Any], keys: tuple[str, ...], located: Located) -> int:
    value = _first(config, keys)
    if value is None:
        raise located.error((), f"missing required key '{keys[0]}' (a transformer config.json needs it)", None)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise located.error((keys[0],), f"expected a positive integer, got {value!r}")
    return value


def _moe(config: dict[str, Any], traits: dict[str, Any], hidden: int, located: Located) -> MoESpec | None:
    experts = _first(config, _EXPERTS)
    if not experts:
        return None
    top_k = _first(config, _TOP_K)
    if not top_k:
        raise located.error((), "an MoE config (it sets the number of experts) is missing num_experts_per_tok")
    width_key = traits.get("expert_intermediate_key", "moe_intermediate_size")
    width = config.get(width_key) or config.get("moe_intermediate_size")
    if not width:
        raise located.error((), f"an MoE config is missing '{width_key}'")
    shared = int(config.get("n_shared_experts") or 0)
    shared_width = int(config.get("shared_expert_intermediate_size") or 0)
    if traits.get("shared_expert_from_moe_width") and shared:
        shared_width = shared * width  # DeepSeek: shared experts are one MLP of n_shared x moe width
    if shared_width and not shared:
        shared = 1
    step = int(config.get("decoder_sparse_step") or config.get("moe_layer_freq") or 1)
    return MoESpec(
        num_experts=experts,
        experts_per_token=top_k,
        expert_intermediate_size=width,
        num_shared_experts=shared,
        shared_expert_intermediate_size=shared_width,
        shared_expert_gate=bool(traits.get("shared_expert_gate", False)) and shared_width > 0,
        first_dense_layers=int(config.get("first_k_dense_replace") or 0),
        sparse_step=step,
        sparse_step_offset=int(traits.get("sparse_step_offset", 0)) if step > 1 else 0,
        dense_layer_indices=tuple(config.get("mlp_only_layers") or ()),
        router_bias=bool(traits.get("router_bias", False)),
        expert_bias=bool(traits.get("expert_bias", False)),
        router_score_bias=config.get("topk_method") == "noaux_tc",
    )


def _mla(config: dict[str, Any]) -> MLASpec | None:
    if not config.get("kv_lora_rank"):
        return None
    return MLASpec(
        q_lora_rank=config.get("q_lora_rank"),
        kv_lora_rank=config["kv_lora_rank"],
        qk_rope_head_dim=config["qk_rope_head_dim"],
        qk_nope_head_dim=config["qk_nope_head_dim"],
        v_head_dim=config["v_head_dim"],
    )


def build_model_spec(config: dict[str, Any], *, name: str, source: str | None, located: Located | None = None) -> ModelSpec:
    """Build a ModelSpec from a config.json dict; unknown keys are ignored."""
    located = located or Located(config, {}, source or name)
    if not isinstance(config, dict):
        raise located.error((), "expected a JSON object at the top level")
    if isinstance(config.get("text_config"), dict):
        # Multimodal wrappers (Gemma 3, Llama 4...): plan the language model.
        config = {**config["text_config"], **{k: v for k, v in config.items() if k == "tie_word_embeddings"}}
    all_traits = load_architecture_traits()
    model_type = str(config.get("model_type", "unknown"))
    traits = all_traits.get(model_type, {})
    layers = _require(config, _LAYERS, located)
    hidden = _require(config, _HIDDEN, located)
    heads = _require(config, _HEADS, located)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    vocab = _require(config, ("vocab_size",), located)
    context = _first(config, _CONTEXT) or 2048
    tie = config.get("tie_word_embeddings")
    if tie is None:
        tie = bool(traits.get("tie_word_embeddings_default", False))
    moe = _moe(config, traits, hidden, located)
    intermediate = int(config.get("intermediate_size") or config.get("n_inner") or 0)
    if moe is not None and traits.get("expert_intermediate_key") == "intermediate_size":
        intermediate = 0 if not moe.first_dense_layers and not moe.dense_layer_indices and moe.sparse_step == 1 else intermediate
    dtype = _DTYPES.get(str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"), "bf16")
    try:
        return ModelSpec(
            name=name,
            source=source,
            architecture=model_type,
            num_layers=layers,
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            vocab_size=vocab,
            tie_word_embeddings=bool(tie),
            qkv_bias=bool(_trait(traits, "qkv_bias", config, False)),
            o_bias=bool(_trait(traits, "o_bias", config, False)),
            qk_norm=bool(traits.get("qk_norm", False)),
            attention_sinks=bool(traits.get("attention_sinks", False)),
            mlp_bias=bool(_trait(traits, "mlp_bias", config, False)),
            norms_per_layer=int(traits.get("norms_per_layer", 2)),
            norm_bias=bool(traits.get("norm_bias", False)),
            lm_head_bias=bool(_trait(traits, "lm_head_bias", config, False)),
            moe=moe,
            mla=_mla(config),
            layer_types=_layer_types(config, traits, layers, located),
            sliding_window=_first(config, _WINDOW) if config.get("use_sliding_window") is not False else None,
            max_context=int(context),
            mtp_layers=int(config.get("num_nextn_predict_layers") or 0),
            dtype=dtype,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise located.error((field,) if field else (), first["msg"].removeprefix("Value error, ")) from None


def load_model_config(path: Path) -> ModelSpec:
    """Read config.json (or a folder containing one) into a ModelSpec."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "config.json"
        if not candidate.exists():
            raise InputError("folder has no config.json", file=str(path))
        path = candidate
    located = parse_json_text(read_text(path), str(path))
    if not isinstance(located.data, dict):
        raise located.error((), "expected a JSON object at the top level")
    name = path.parent.name if path.name == "config.json" else path.stem
    return build_model_spec(located.data, name=name, source=str(path), located=located)
