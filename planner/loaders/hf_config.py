"""Turn a Hugging Face config.json (a file, a folder holding one, or a dict) into a ModelSpec.

Every value the accounting reads is checked for its type and range (a string, a NaN, a zero or a
billion layers is an error naming the key). A model_type in planner/catalog/architectures.yaml is
read with its traits; any other is accounted as a generic decoder only when every key is one the
loader reads or one planner/catalog/config-keys.yaml lists as inert. Hybrid state-space and
linear-attention models are refused.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from planner.errors import InputError
from planner.limits import (
    MAX_CONFIG_FILE_BYTES,
    MAX_CONTEXT_TOKENS,
    MAX_EXPERTS,
    MAX_HEADS,
    MAX_HIDDEN_SIZE,
    MAX_LAYERS,
    MAX_VOCAB_SIZE,
)
from planner.loaders.files import is_folder, probe, read_text
from planner.loaders.validation import to_input_error
from planner.loaders.yamlfile import Located, parse_json_text, parse_yaml_text
from planner.schemas.model import MLASpec, ModelSpec, MoESpec, ShippedPrecision

# Generic spellings of each field across model families, tried in order.
_LAYERS = ("num_hidden_layers", "n_layer", "num_layers")
_HIDDEN = ("hidden_size", "n_embd", "d_model")
_HEADS = ("num_attention_heads", "n_head", "num_heads")
_EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_TOP_K = ("num_experts_per_tok", "experts_per_token", "moe_topk")
_CONTEXT = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_WINDOW = ("sliding_window", "sliding_window_size")  # the second is MLC's spelling
_MLA = ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}
# Every key the loader reads; with the inert list these are what an unknown model_type may hold.
READ_KEYS = frozenset(
    _LAYERS + _HIDDEN + _HEADS + _EXPERTS + _TOP_K + _CONTEXT + _WINDOW + _MLA + (
        "model_type", "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "intermediate_size",
        "n_inner", "moe_intermediate_size", "shared_expert_intermediate_size", "n_shared_experts",
        "first_k_dense_replace", "decoder_sparse_step", "moe_layer_freq", "mlp_only_layers", "topk_method",
        "q_lora_rank", "use_sliding_window", "layer_types", "sliding_window_pattern", "max_window_layers",
        "attention_chunk_size", "num_nextn_predict_layers", "torch_dtype", "dtype", "attention_bias", "mlp_bias",
        "lm_head_bias", "text_config", "quantization_config", "top_k",
    )
)
_LAYER_TYPES = {"sliding_attention": "sliding", "full_attention": "full", "sliding": "sliding", "full": "full",
                "chunked_attention": "chunked"}


@functools.cache
def load_architecture_traits() -> dict[str, dict[str, Any]]:
    """The per-model_type traits table shipped with the package."""
    text = resources.files("planner.catalog").joinpath("architectures.yaml").read_text(encoding="utf-8")
    return parse_yaml_text(text, "planner/catalog/architectures.yaml", trusted=True).data


@functools.cache
def load_config_keys() -> dict[str, Any]:
    """The inert keys and the state-space markers (planner/catalog/config-keys.yaml)."""
    text = resources.files("planner.catalog").joinpath("config-keys.yaml").read_text(encoding="utf-8")
    return parse_yaml_text(text, "planner/catalog/config-keys.yaml", trusted=True).data


class _Reader:
    """Typed, bounded reads of config keys, with errors that name the key and its line."""

    def __init__(self, config: dict[str, Any], located: Located) -> None:
        self.config, self.located = config, located

    def key(self, keys: tuple[str, ...]) -> str | None:
        return next((k for k in keys if self.config.get(k) is not None), None)

    def integer(self, keys: tuple[str, ...] | str, *, minimum: int = 1, maximum: int, default: int | None = None,
                required: bool = False) -> int | None:
        keys = (keys,) if isinstance(keys, str) else keys
        found = self.key(keys)
        if found is None:
            if required:
                raise self.located.error((), f"missing required key '{keys[0]}' (a transformer config.json needs it)")
            return default
        value = self.config[found]
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, float) and math.isnan(value):
            raise self.located.error((found,), "NaN is not a number; expected an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.located.error((found,), f"expected an integer, got {value!r}")
        if not minimum <= value <= maximum:
            raise self.located.error((found,), f"{value:,} is outside {minimum:,}-{maximum:,}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.located.error((key,), f"expected true or false, got {value!r}")
        return value

    def integers(self, key: str, *, maximum: int) -> tuple[int, ...]:
        value = self.config.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < maximum for v in value):
            raise self.located.error((key,), f"expected a list of layer indices below {maximum}")
        return tuple(value)


def _trait(traits: dict[str, Any], name: str, reader: _Reader, default: Any) -> Any:
    value = traits.get(name, load_architecture_traits()["generic"].get(name, default))
    if isinstance(value, dict) and "key" in value:
        return reader.flag(value["key"], value.get("default", default))
    return value


def _check_keys(config: dict[str, Any], model_type: str, located: Located) -> None:
    """Refuse state-space models, and configs of an unknown model_type with keys the loader cannot account for."""
    markers = load_config_keys()["state_space"]
    hybrid = [k for k in config if k in markers["keys"] or k.startswith(tuple(markers["key_prefixes"]))]
    if model_type in markers["model_types"] or hybrid:
        what = f"model_type '{model_type}'" if model_type in markers["model_types"] else f"keys {', '.join(sorted(hybrid)[:6])}"
        raise located.error((hybrid[0],) if hybrid and model_type not in markers["model_types"] else ("model_type",),
                            f"{what}: a hybrid state-space or linear-attention model (its layers keep a recurrent state, "
                            f"not a KV cache), which the planner does not model")
    if model_type in load_architecture_traits():
        return
    inert = set(load_config_keys()["inert"])
    unknown = sorted(k for k in config if not k.startswith("_") and k not in READ_KEYS and k not in inert)
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise located.error((unknown[0],), f"model_type '{model_type}' is not one the planner knows, and the key(s) {shown} "
                            f"may change its tensor shapes; the planner cannot account for them (add the architecture to "
                            f"planner/catalog/architectures.yaml, or remove keys that set no shape)")


def _layer_types(reader: _Reader, traits: dict[str, Any], num_layers: int) -> tuple[str, ...]:
    config, located = reader.config, reader.located
    listed = config.get("layer_types")
    window_key = reader.key(_WINDOW)
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
            raise located.error(("layer_types",), f"expected a list of layer types, got {listed!r}")
        if len(listed) != num_layers:
            raise located.error(("layer_types",), f"lists {len(listed)} layers, num_hidden_layers is {num_layers}")
        refused = load_config_keys()["state_space"]["layer_types"]
        out = []
        for index, kind in enumerate(listed):
            if kind in refused:
                raise located.error(("layer_types", index), f"'{kind}' layers keep a recurrent state, not a KV cache; "
                                    f"the planner does not model hybrid state-space or linear-attention models")
            if kind not in _LAYER_TYPES:
                raise located.error(("layer_types", index), f"unknown layer type '{kind}'; expected "
                                    f"full_attention, sliding_attention or chunked_attention")
            out.append(_LAYER_TYPES[kind])
        if "sliding" in out and (window_key is None or config.get("use_sliding_window") is False):
            out = ["full" if k == "sliding" else k for k in out]  # no window: those layers attend to everything
        return tuple(out) if any(k != "full" for k in out) else ()
    if window_key is None or config.get("use_sliding_window") is False:
        return ()
    pattern = reader.integer("sliding_window_pattern", maximum=MAX_LAYERS) or traits.get("sliding_window_pattern_default")
    if pattern:
        # Gemma: in every run of `pattern` layers the last one is global, the rest slide.
        return tuple("full" if i % pattern == pattern - 1 else "sliding" for i in range(num_layers))
    max_window_layers = reader.integer("max_window_layers", minimum=0, maximum=MAX_LAYERS)
    if config.get("use_sliding_window") and max_window_layers is not None:
        # Qwen2: layers from max_window_layers on use the sliding window.
        return tuple("sliding" if i >= max_window_layers else "full" for i in range(num_layers))
    return tuple("sliding" for _ in range(num_layers))


def _moe(reader: _Reader, traits: dict[str, Any], num_layers: int) -> MoESpec | None:
    experts = reader.integer(_EXPERTS, minimum=0, maximum=MAX_EXPERTS)
    if not experts:
        return None
    keys = _TOP_K + (("top_k",) if reader.config.get("top_k") is not None and reader.key(_TOP_K) is None else ())
    top_k = reader.integer(keys, maximum=MAX_EXPERTS)
    if top_k is None:
        raise reader.located.error((), "an MoE config (it sets the number of experts) is missing num_experts_per_tok")
    if top_k > experts:
        raise reader.located.error((reader.key(keys) or keys[0],), f"{top_k} experts per token but only {experts} experts")
    width_key = traits.get("expert_intermediate_key", "moe_intermediate_size")
    width = reader.integer((width_key, "moe_intermediate_size"), maximum=MAX_HIDDEN_SIZE * 16)
    if width is None:
        raise reader.located.error((), f"an MoE config is missing '{width_key}'")
    shared = reader.integer("n_shared_experts", minimum=0, maximum=MAX_EXPERTS, default=0) or 0
    shared_width = reader.integer("shared_expert_intermediate_size", minimum=0, maximum=MAX_HIDDEN_SIZE * 64, default=0) or 0
    if traits.get("shared_expert_from_moe_width") and shared:
        shared_width = shared * width  # DeepSeek: shared experts are one MLP of n_shared x moe width
    if shared_width and not shared:
        shared = 1
    step = reader.integer(("decoder_sparse_step", "moe_layer_freq"), maximum=MAX_LAYERS, default=1) or 1
    return MoESpec(
        num_experts=experts, experts_per_token=top_k, expert_intermediate_size=width, num_shared_experts=shared,
        shared_expert_intermediate_size=shared_width,
        shared_expert_gate=bool(traits.get("shared_expert_gate", False)) and shared_width > 0,
        first_dense_layers=reader.integer("first_k_dense_replace", minimum=0, maximum=MAX_LAYERS, default=0) or 0,
        sparse_step=step, sparse_step_offset=int(traits.get("sparse_step_offset", 0)) if step > 1 else 0,
        dense_layer_indices=reader.integers("mlp_only_layers", maximum=num_layers),
        router_bias=bool(traits.get("router_bias", False)), expert_bias=bool(traits.get("expert_bias", False)),
        router_score_bias=reader.config.get("topk_method") == "noaux_tc",
    )


def _mla(reader: _Reader) -> MLASpec | None:
    if reader.config.get("kv_lora_rank") is None:
        return None
    missing = [k for k in _MLA if reader.config.get(k) is None]
    if missing:
        raise reader.located.error(("kv_lora_rank",), f"an MLA config (it sets kv_lora_rank) also needs {', '.join(missing)}")
    values = {k: reader.integer(k, maximum=MAX_HIDDEN_SIZE) for k in _MLA}
    q_rank = reader.integer("q_lora_rank", maximum=MAX_HIDDEN_SIZE)
    return MLASpec(q_lora_rank=q_rank, **values)


def _shipped(config: dict[str, Any]) -> ShippedPrecision | None:
    """How the published checkpoint is quantised, from its quantization_config (None when it is
    not, or in a way the planner does not name): fp8 with 128x128 blocks (DeepSeek), MXFP4 experts
    (gpt-oss), GPTQ/AWQ, compressed-tensors, bitsandbytes."""
    quant = config.get("quantization_config")
    if not isinstance(quant, dict) or not isinstance(quant.get("quant_method"), str):
        return None
    method = quant["quant_method"].lower()
    bits = quant.get("bits") if isinstance(quant.get("bits"), int) else 4
    if method == "fp8":
        block = quant.get("weight_block_size")
        return ShippedPrecision(weights="fp8_block128" if block == [128, 128] else "fp8", method=method)
    if method == "mxfp4":
        modules = quant.get("modules_to_not_convert")
        skipped = " ".join(str(m) for m in modules) if isinstance(modules, list) else ""
        if "self_attn" in skipped or "attn" in skipped:
            return ShippedPrecision(weights="bf16", overrides={"experts": "mxfp4"}, method=method)
        return ShippedPrecision(weights="mxfp4", method=method)
    if method in ("gptq", "awq") and bits == 4 and quant.get("group_size", 128) == 128:
        return ShippedPrecision(weights=f"{method}-int4", method=method)
    if method == "bitsandbytes":
        return ShippedPrecision(weights="nf4" if quant.get("load_in_4bit") else "int8", method=method)
    groups = quant.get("config_groups")
    if method == "compressed-tensors" and isinstance(groups, dict):
        for group in groups.values():
            weights = group.get("weights") if isinstance(group, dict) else None
            if isinstance(weights, dict) and isinstance(weights.get("num_bits"), int):
                n, kind = weights["num_bits"], weights.get("type", "int")
                if kind == "float" and n == 8:
                    return ShippedPrecision(weights="fp8", method=method)
                if kind == "int" and n in (4, 8):
                    return ShippedPrecision(weights=f"int{n}", method=method)
    return None


def build_model_spec(config: dict[str, Any], *, name: str, source: str | None, located: Located | None = None,
                     origin: str = "config") -> ModelSpec:
    """Build a ModelSpec from a config.json dict."""
    located = located or Located(config, {}, source or name)
    if not isinstance(config, dict):
        raise located.error((), "expected a JSON object at the top level")
    text_config = config.get("text_config")
    if text_config is not None:
        if not isinstance(text_config, dict):
            raise located.error(("text_config",), "expected an object")
        # Multimodal wrappers (Gemma 3, Llama 4...): plan the language model.
        config = {**text_config, **{k: v for k, v in config.items() if k == "tie_word_embeddings"}}
        located = Located(config, {k[1:]: v for k, v in located.marks.items() if k[:1] == ("text_config",)}, located.file)
    model_type = config.get("model_type", "unknown")
    if not isinstance(model_type, str):
        raise located.error(("model_type",), f"expected a string, got {model_type!r}")
    _check_keys(config, model_type, located)
    traits = load_architecture_traits().get(model_type, {})
    reader = _Reader(config, located)
    layers = reader.integer(_LAYERS, maximum=MAX_LAYERS, required=True)
    hidden = reader.integer(_HIDDEN, maximum=MAX_HIDDEN_SIZE, required=True)
    heads = reader.integer(_HEADS, maximum=MAX_HEADS, required=True)
    assert layers is not None and hidden is not None and heads is not None
    kv_heads = reader.integer("num_key_value_heads", maximum=MAX_HEADS, default=heads)
    head_dim = reader.integer("head_dim", maximum=MAX_HIDDEN_SIZE, default=max(1, hidden // heads))
    vocab = reader.integer("vocab_size", maximum=MAX_VOCAB_SIZE, required=True)
    context = reader.integer(_CONTEXT, maximum=MAX_CONTEXT_TOKENS, default=2048)
    tie = reader.flag("tie_word_embeddings", bool(traits.get("tie_word_embeddings_default", False)))
    moe = _moe(reader, traits, layers)
    intermediate = reader.integer(("intermediate_size", "n_inner"), minimum=0, maximum=MAX_HIDDEN_SIZE * 64, default=0) or 0
    if moe is not None and traits.get("expert_intermediate_key") == "intermediate_size":
        intermediate = 0 if not moe.first_dense_layers and not moe.dense_layer_indices and moe.sparse_step == 1 else intermediate
    dtype_value = config.get("torch_dtype") or config.get("dtype") or "bfloat16"
    layer_types = _layer_types(reader, traits, layers)
    window = reader.integer(_WINDOW, maximum=MAX_CONTEXT_TOKENS) if "sliding" in layer_types else None
    chunk = reader.integer("attention_chunk_size", maximum=MAX_CONTEXT_TOKENS) if "chunked" in layer_types else None
    try:
        return ModelSpec(
            name=name, source=source, origin=origin, architecture=model_type, num_layers=layers, hidden_size=hidden,
            intermediate_size=intermediate, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
            vocab_size=vocab, tie_word_embeddings=tie,
            qkv_bias=bool(_trait(traits, "qkv_bias", reader, False)), o_bias=bool(_trait(traits, "o_bias", reader, False)),
            qk_norm=bool(traits.get("qk_norm", False)), attention_sinks=bool(traits.get("attention_sinks", False)),
            mlp_bias=bool(_trait(traits, "mlp_bias", reader, False)), norms_per_layer=int(traits.get("norms_per_layer", 2)),
            norm_bias=bool(traits.get("norm_bias", False)), lm_head_bias=bool(_trait(traits, "lm_head_bias", reader, False)),
            moe=moe, mla=_mla(reader), layer_types=layer_types, sliding_window=window, attention_chunk_size=chunk,
            max_context=context,
            mtp_layers=reader.integer("num_nextn_predict_layers", minimum=0, maximum=MAX_LAYERS, default=0) or 0,
            dtype=_DTYPES.get(str(dtype_value), "bf16"),
            shipped=_shipped(config),
        )
    except ValidationError as exc:
        raise to_input_error(exc, located=located) from None


def load_model_config(path: Path, *, origin: str = "config") -> ModelSpec:
    """Read config.json (or a folder containing one) into a ModelSpec."""
    path = Path(path)
    if is_folder(path):
        if probe(path / "config.json") is None:
            raise InputError("folder has no config.json", file=str(path))
        path = path / "config.json"
    located = parse_json_text(read_text(path, limit=MAX_CONFIG_FILE_BYTES, what="config.json"), str(path))
    if not isinstance(located.data, dict):
        raise located.error((), "expected a JSON object at the top level")
    name = path.parent.name if path.name == "config.json" else path.stem
    return build_model_spec(located.data, name=name or "model", source=str(path), located=located, origin=origin)
