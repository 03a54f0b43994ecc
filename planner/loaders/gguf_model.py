"""A model from a .gguf file: its architecture from the metadata, its weights from the tensor infos
(read by planner/loaders/gguf_header.py, which bounds what a hostile file can cost)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from planner.errors import InputError
from planner.loaders.gguf_header import GGUFArray, GGUFHeader, read_gguf_header
from planner.loaders.hf_config import build_model_spec
from planner.loaders.tensor_names import classify_tensor
from planner.schemas.checkpoint import CheckpointInfo, CheckpointTensor
from planner.schemas.model import ModelSpec

# GGUF metadata keys (llama.cpp gguf-py constants, "{arch}." prefixed) -> config.json keys.
GGUF_KEYS = {
    "block_count": "num_hidden_layers", "embedding_length": "hidden_size", "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim", "context_length": "max_position_embeddings", "vocab_size": "vocab_size",
    "expert_count": "num_experts", "expert_used_count": "num_experts_per_tok",
    "expert_feed_forward_length": "moe_intermediate_size", "expert_shared_count": "n_shared_experts",
    "leading_dense_block_count": "first_k_dense_replace", "attention.q_lora_rank": "q_lora_rank",
    "attention.kv_lora_rank": "kv_lora_rank", "rope.dimension_count": "qk_rope_head_dim",
    "attention.sliding_window": "sliding_window", "attention.value_length": "v_head_dim",
}
# GGUF general.architecture -> Hugging Face model_type.
GGUF_ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen3moe": "qwen3_moe", "qwen2moe": "qwen2_moe",
                      "deepseek2": "deepseek_v3", "gpt-oss": "gpt_oss", "gemma2": "gemma2", "gemma3": "gemma3_text",
                      "phi3": "phi3", "mixtral": "mixtral"}


def _integer(value: Any, file: str, key: str) -> int:
    """A metadata value that must be a whole number (a per-layer array gives its largest entry)."""
    if isinstance(value, GGUFArray):
        if not value.values:
            raise InputError(f"expected a number or a short list of numbers, got an array of {value.length:,} {value.item_type}",
                             file=file, field=key)
        value = max(value.values)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, float) and math.isnan(value):
        raise InputError("NaN is not a number; expected an integer", file=file, field=key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"expected an integer, got {value!r}", file=file, field=key)
    return value


def build_gguf_config(header: GGUFHeader, file: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The config.json equivalent of a GGUF header, and config key -> GGUF key for error messages."""
    arch = header.metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InputError("GGUF metadata has no general.architecture", file=file, field="general.architecture")
    config: dict[str, Any] = {"model_type": GGUF_ARCHITECTURES.get(arch, arch)}
    origin: dict[str, str] = {}
    for key, target in GGUF_KEYS.items():
        value = header.metadata.get(f"{arch}.{key}")
        if value is not None:
            config[target] = _integer(value, file, f"{arch}.{key}")
            origin[target] = f"{arch}.{key}"
    if "vocab_size" not in config:
        tokens = header.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, GGUFArray):
            config["vocab_size"] = tokens.length
            origin["vocab_size"] = "tokenizer.ggml.tokens"
    names = {t.name for t in header.tensors}
    config["tie_word_embeddings"] = "output.weight" not in names
    if "head_dim" in config and config.get("kv_lora_rank"):
        config["qk_nope_head_dim"] = config["head_dim"] - config.get("qk_rope_head_dim", 0)
    if arch == "gpt-oss":
        config["experts_per_token"] = config.pop("num_experts_per_tok", None)
        config["num_local_experts"] = config.pop("num_experts", None)
        config["intermediate_size"] = config.get("moe_intermediate_size", config.get("intermediate_size"))
    return {k: v for k, v in config.items() if v is not None}, origin


def load_gguf_model(path: Path) -> ModelSpec:
    """A model from a .gguf file: architecture from its metadata, weights from its tensor infos."""
    from planner.loaders.checkpoint import build_checkpoint_notes

    file = str(path)
    header = read_gguf_header(path)
    config, origin = build_gguf_config(header, file)
    try:
        model = build_model_spec(config, name=path.stem, source=file, origin="checkpoint")
    except InputError as exc:
        if exc.field in origin:  # name the GGUF key the value came from
            raise InputError(exc.detail, file=file, field=origin[exc.field]) from None
        raise
    tensors: list[CheckpointTensor] = []
    unknown: list[str] = []
    for tensor in header.tensors:
        where = classify_tensor(tensor.name, "gguf")
        if where is None:
            unknown.append(tensor.name)
            continue
        component, kind, layer = where
        tensors.append(CheckpointTensor(name=tensor.name, component=component, kind=kind if len(tensor.shape) > 1 else None,
                                        layer=layer, params=tensor.n_elements, bytes=tensor.n_bytes,
                                        row_size=max(1, tensor.shape[0]), dtype=tensor.type_name))
    file_type = header.metadata.get("general.file_type")
    types = sorted({t.dtype for t in tensors if t.kind})
    info = CheckpointInfo(format="gguf", quant_method=f"gguf file_type {file_type}: {', '.join(types)}", source=file,
                          tensors=tuple(tensors), notes=tuple(build_checkpoint_notes(model, tensors, unknown)))
    return model.model_copy(update={"checkpoint": info})
