"""Models from the files themselves: a Hugging Face folder (config.json plus safetensors), a single
.safetensors file beside its config.json, or a .gguf file. Only headers are read."""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from planner.errors import InputError
from planner.loaders.hf_config import build_model_spec, load_model_config
from planner.loaders.safetensors_header import HeaderTensor, read_safetensors_header
from planner.loaders.yamlfile import parse_json_text, parse_yaml_text, read_text
from planner.schemas.checkpoint import CheckpointInfo, CheckpointTensor
from planner.schemas.model import ModelSpec

# Companions of a quantised weight, folded into it: suffix -> what replaces it to name the weight.
_AUX = (
    (".weight_scale_inv", ".weight"), (".weight_scale", ".weight"), (".input_scale", ".weight"),
    (".weight_zero_point", ".weight"), (".weight_g_idx", ".weight"), (".weight_shape", ".weight"),
    (".qzeros", ".weight"), (".scales", ".weight"), (".g_idx", ".weight"),
    (".weight.absmax", ".weight"), (".weight.quant_map", ".weight"), (".weight.nested_absmax", ".weight"),
    (".weight.nested_quant_map", ".weight"), (".weight.quant_state.bitsandbytes__nf4", ".weight"),
    (".weight.quant_state.bitsandbytes__fp4", ".weight"), (".SCB", ".weight"), (".weight_format", ".weight"),
    ("_scales", ""),
)
# Packed data tensors and the weight they hold.
_PACKED = ((".qweight", ".weight"), (".weight_packed", ".weight"), ("_blocks", ""))


@functools.cache
def _patterns(kind: str) -> list[tuple[re.Pattern[str], str, str | None]]:
    text = resources.files("planner.catalog").joinpath("tensor-names.yaml").read_text(encoding="utf-8")
    rows = parse_yaml_text(text, "planner/catalog/tensor-names.yaml").data[kind]
    return [(re.compile("^" + r["pattern"].replace("{L}", r"(?P<layer>\d+)") + "$"), r["component"], r.get("kind")) for r in rows]


def classify_tensor(name: str, kind: str) -> tuple[str, str | None, int | None] | None:
    """(component, tensor kind, layer) of a checkpoint tensor name, or None when unknown."""
    for pattern, component, tensor_kind in _patterns(kind):
        match = pattern.match(name)
        if match:
            layer = match.groupdict().get("layer")
            return component, tensor_kind, int(layer) if layer is not None else None
    return None


def _group(tensors: list[HeaderTensor]) -> dict[str, dict[str, Any]]:
    """Logical weights: each data tensor with its scales, zero points and packing."""
    groups: dict[str, dict[str, Any]] = {}
    for tensor in tensors:
        base, role = tensor.name, "data"
        for suffix, replacement in _AUX:
            if tensor.name.endswith(suffix):
                base, role = tensor.name[: -len(suffix)] + replacement, "aux"
                break
        else:
            for suffix, replacement in _PACKED:
                if tensor.name.endswith(suffix):
                    base, role = tensor.name[: -len(suffix)] + replacement, suffix
                    break
        entry = groups.setdefault(base, {"data": None, "packing": None, "aux": []})
        if role == "aux":
            entry["aux"].append(tensor)
        else:
            entry["data"] = tensor
            entry["packing"] = None if role == "data" else role
    return groups


def _logical(base: str, entry: dict[str, Any], bits: int, method: str | None) -> tuple[int, int, str]:
    """(parameters, row size, storage label) of a logical weight."""
    data: HeaderTensor = entry["data"]
    shape = data.shape or (1,)
    packing = entry["packing"]
    if packing in (".qweight", ".weight_packed"):
        pack = 32 // bits
        label = {"gptq": f"gptq-int{bits}", "awq": f"awq-int{bits}"}.get(method or "", f"int{bits}")
        row = shape[0] * pack if packing == ".qweight" and method != "awq" else (shape[-1] * pack if packing == ".weight_packed" else shape[0])
        return data.numel * pack, max(1, row), label
    if packing == "_blocks":
        return data.numel * 2, max(1, shape[-2] * 32 if len(shape) >= 2 else 1), "mxfp4"
    if data.dtype == "U8" and any("quant_state" in a.name for a in entry["aux"]):
        return data.numel * 2, 1, "nf4"
    return data.numel, max(1, shape[-1]), data.dtype


def build_checkpoint_info(model: ModelSpec, config: dict[str, Any], tensors: list[HeaderTensor], source: str) -> CheckpointInfo:
    """Logical tensors with components and on-disk bytes, and notes where config and disk disagree."""
    quant = config.get("quantization_config") or {}
    method = quant.get("quant_method") or ("fp8" if any(t.dtype.startswith("F8") for t in tensors) else None)
    bits = int(quant.get("bits") or quant.get("weight_bits") or 4)
    if method == "compressed-tensors":
        groups_cfg = quant.get("config_groups") or {}
        for group in groups_cfg.values():
            bits = int((group.get("weights") or {}).get("num_bits") or bits)
    out: list[CheckpointTensor] = []
    unknown: list[str] = []
    for base, entry in _group(tensors).items():
        if entry["data"] is None:
            unknown.append(base)
            continue
        where = classify_tensor(base, "safetensors")
        if where is None:
            unknown.append(base)
            continue
        component, kind, layer = where
        params, row, label = _logical(base, entry, bits, method)
        size = entry["data"].nbytes + sum(a.nbytes for a in entry["aux"])
        if len(entry["data"].shape) <= 1:
            kind = None
        out.append(CheckpointTensor(name=base, component=component, kind=kind, layer=layer, params=params,
                                    bytes=size, row_size=row, dtype=label))
    return CheckpointInfo(format="safetensors", quant_method=method, source=source, tensors=tuple(out),
                          notes=tuple(_notes(model, out, unknown)))


def _notes(model: ModelSpec, tensors: list[CheckpointTensor], unknown: list[str]) -> list[str]:
    notes = []
    served = [t for t in tensors if t.layer is None or t.layer < model.num_layers]
    extra = [t for t in tensors if t.layer is not None and t.layer >= model.num_layers]
    if extra:
        layers = sorted({t.layer for t in extra})
        notes.append(f"the checkpoint holds block(s) {', '.join(map(str, layers))} beyond num_hidden_layers="
                     f"{model.num_layers} (multi-token prediction): {sum(t.params for t in extra):,} parameters, "
                     f"{sum(t.bytes for t in extra) / 1e9:,.2f} GB, not served")
    if model.tie_word_embeddings and any(t.kind == "lm_head" for t in served):
        notes.append("the config ties lm_head to the embedding but the checkpoint stores lm_head.weight too: "
                     "planning with both copies, as on disk")
    if unknown:
        notes.append(f"{len(unknown)} tensor(s) not recognised and left out, e.g. {', '.join(sorted(unknown)[:3])}")
    return notes


def _shards(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        located = parse_json_text(read_text(index), str(index))
        weight_map = located.data.get("weight_map") if isinstance(located.data, dict) else None
        if not isinstance(weight_map, dict):
            raise located.error(("weight_map",), "expected a weight_map of tensor name to shard file")
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (folder / f).exists()]
        if missing:
            raise InputError(f"shard {missing[0]} named in the index is missing", file=str(index), field="weight_map")
        return [folder / f for f in files]
    return sorted(folder.glob("*.safetensors"))


def load_safetensors_model(path: Path) -> ModelSpec:
    """A model from a Hugging Face folder or a single .safetensors file beside its config.json."""
    folder = path if path.is_dir() else path.parent
    config_path = folder / "config.json"
    if not config_path.exists():
        raise InputError("a safetensors checkpoint needs its config.json in the same folder", file=str(path))
    model = load_model_config(config_path)
    files = _shards(folder) if path.is_dir() else [path]
    if not files:
        return model
    tensors: list[HeaderTensor] = []
    for file in files:
        tensors += read_safetensors_header(file)[0]
    config = json.loads(read_text(config_path))
    if isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], "quantization_config": config.get("quantization_config")}
    info = build_checkpoint_info(model, config, tensors, str(path))
    return model.model_copy(update={"checkpoint": info, "source": str(path)})


# GGUF metadata keys (llama.cpp gguf-py constants, "{arch}." prefixed) -> config.json keys.
_GGUF_KEYS = {
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
_GGUF_ARCH = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen3moe": "qwen3_moe", "qwen2moe": "qwen2_moe",
              "deepseek2": "deepseek_v3", "gpt-oss": "gpt_oss", "gemma2": "gemma2", "gemma3": "gemma3_text",
              "phi3": "phi3", "mixtral": "mixtral"}


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        value = field.contents()
    except Exception:  # noqa: BLE001 - older gguf versions lack contents(); fall back to raw parts
        value = field.parts[field.data[0]].tolist() if field.data else None
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
    return value


def load_gguf_model(path: Path) -> ModelSpec:
    """A model from a .gguf file: architecture from its metadata, weights from its tensor infos."""
    try:
        from gguf import GGUFReader  # the ecosystem's reader (llama.cpp gguf-py)
    except ImportError:
        raise InputError("reading .gguf files needs the gguf package: pip install 'planner[gguf]'", file=str(path)) from None
    try:
        reader = GGUFReader(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - the reader raises ValueError, struct.error, IndexError...
        raise InputError(f"not a readable GGUF file: {exc}", file=str(path)) from None
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        raise InputError("GGUF metadata has no general.architecture", file=str(path), field="general.architecture")
    config: dict[str, Any] = {"model_type": _GGUF_ARCH.get(arch, arch)}
    for key, target in _GGUF_KEYS.items():
        value = _field(reader, f"{arch}.{key}")
        if isinstance(value, list):
            value = max(value) if value else None
        if value is not None:
            config[target] = int(value)
    if "vocab_size" not in config:
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        if tokens is not None:
            config["vocab_size"] = len(tokens.data)
    names = {t.name for t in reader.tensors}
    config["tie_word_embeddings"] = "output.weight" not in names
    if "head_dim" in config and config.get("kv_lora_rank"):
        config["qk_nope_head_dim"] = config["head_dim"] - config.get("qk_rope_head_dim", 0)
    if arch == "gpt-oss":
        config["experts_per_token"] = config.get("num_experts_per_tok")
        config["num_local_experts"] = config.pop("num_experts", None)
        config["intermediate_size"] = config.get("moe_intermediate_size", config.get("intermediate_size"))
    file_type = _field(reader, "general.file_type")
    model = build_model_spec(config, name=path.stem, source=str(path))
    tensors: list[CheckpointTensor] = []
    unknown: list[str] = []
    for tensor in reader.tensors:
        where = classify_tensor(tensor.name, "gguf")
        if where is None:
            unknown.append(tensor.name)
            continue
        component, kind, layer = where
        shape = [int(x) for x in tensor.shape]
        if len(shape) <= 1:
            kind = None
        tensors.append(CheckpointTensor(name=tensor.name, component=component, kind=kind, layer=layer,
                                        params=int(tensor.n_elements), bytes=int(tensor.n_bytes), row_size=max(1, shape[0]),
                                        dtype=tensor.tensor_type.name))
    types = sorted({t.dtype for t in tensors if t.kind})
    info = CheckpointInfo(format="gguf", quant_method=f"gguf file_type {file_type}: {', '.join(types)}", source=str(path),
                          tensors=tuple(tensors), notes=tuple(_notes(model, tensors, unknown)))
    return model.model_copy(update={"checkpoint": info})


def load_checkpoint_model(path: Path) -> ModelSpec:
    """Dispatch on what `path` is: a .gguf file, a .safetensors file, or a folder."""
    if path.suffix == ".gguf":
        return load_gguf_model(path)
    return load_safetensors_model(path)


def is_checkpoint(path: Path) -> bool:
    """True for a .gguf or .safetensors file, or a folder with safetensors shards."""
    if path.suffix in (".gguf", ".safetensors"):
        return path.exists()
    return path.is_dir() and (any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").exists())
