"""Models from the files themselves: a Hugging Face folder (config.json plus safetensors), a single
.safetensors file beside its config.json, or a .gguf file (planner/loaders/gguf_model.py). Only
headers are read; shard names must stay inside the model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.errors import InputError
from planner.limits import MAX_CHECKPOINT_SHARDS, MAX_CHECKPOINT_TENSORS, MAX_CONFIG_FILE_BYTES, MAX_INDEX_FILE_BYTES
from planner.loaders.files import is_folder, is_regular_file, probe, read_text
from planner.loaders.gguf_model import load_gguf_model
from planner.loaders.hf_config import build_model_spec
from planner.loaders.safetensors_header import HeaderTensor, read_safetensors_header
from planner.loaders.tensor_names import classify_tensor
from planner.loaders.yamlfile import Located, parse_json_text
from planner.schemas.checkpoint import CheckpointInfo, CheckpointTensor
from planner.schemas.model import ModelSpec
from planner.units import to_gb

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


def _quantization(located: Located, tensors: list[HeaderTensor]) -> tuple[str | None, int]:
    """(method, bits) from the config's quantization_config, each value checked."""
    config = located.data
    quant = config.get("quantization_config")
    path: tuple[str | int, ...] = ("quantization_config",)
    if quant is None:
        quant = {}
    if not isinstance(quant, dict):
        raise located.error(path, f"expected an object, got {quant!r}")
    method = quant.get("quant_method")
    if method is not None and not isinstance(method, str):
        raise located.error(path + ("quant_method",), f"expected a string, got {method!r}")
    method = method or ("fp8" if any(t.dtype.startswith("F8") for t in tensors) else None)

    def bits_at(value: Any, where: tuple[str | int, ...], default: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
            raise located.error(where, f"expected a bit width of 1-16, got {value!r}")
        return value

    key = "bits" if quant.get("bits") is not None else "weight_bits"
    bits = bits_at(quant.get(key), path + (key,), 4)
    if method == "compressed-tensors":
        groups = quant.get("config_groups") or {}
        if not isinstance(groups, dict):
            raise located.error(path + ("config_groups",), "expected an object of quantisation groups")
        for name, group in groups.items():
            weights = group.get("weights") if isinstance(group, dict) else None
            if weights is not None and not isinstance(weights, dict):
                raise located.error(path + ("config_groups", name, "weights"), "expected an object")
            bits = bits_at((weights or {}).get("num_bits"), path + ("config_groups", name, "weights", "num_bits"), bits)
    return method, bits


def build_checkpoint_info(model: ModelSpec, located: Located, tensors: list[HeaderTensor], source: str) -> CheckpointInfo:
    """Logical tensors with components and on-disk bytes, and notes where config and disk disagree."""
    method, bits = _quantization(located, tensors)
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
                          notes=tuple(build_checkpoint_notes(model, out, unknown)))


def build_checkpoint_notes(model: ModelSpec, tensors: list[CheckpointTensor], unknown: list[str]) -> list[str]:
    notes = []
    served = [t for t in tensors if t.layer is None or t.layer < model.num_layers]
    extra = [t for t in tensors if t.layer is not None and t.layer >= model.num_layers]
    if extra:
        layers = sorted({t.layer for t in extra})
        notes.append(f"the checkpoint holds block(s) {', '.join(map(str, layers))} beyond num_hidden_layers="
                     f"{model.num_layers} (multi-token prediction): {sum(t.params for t in extra):,} parameters, "
                     f"{to_gb(sum(t.bytes for t in extra)):,.2f} GB, not served")
    if model.tie_word_embeddings and any(t.kind == "lm_head" for t in served):
        notes.append("the config ties lm_head to the embedding but the checkpoint stores lm_head.weight too: "
                     "planning with both copies, as on disk")
    if unknown:
        notes.append(f"{len(unknown)} tensor(s) not recognised and left out, e.g. {', '.join(sorted(unknown)[:3])}")
    return notes


def _shard_path(folder: Path, name: Any, index_file: str, key: str) -> Path:
    """A shard named in the index, which must be a plain file name or a path inside the folder."""
    if not isinstance(name, str) or not name:
        raise InputError(f"expected a shard file name, got {name!r}", file=index_file, field=f"weight_map.{key}")
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or "\x00" in name:
        raise InputError(f"shard '{name}' is outside the model folder", file=index_file, field=f"weight_map.{key}")
    return folder / name


def _shards(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if probe(index) is None:
        return sorted(folder.glob("*.safetensors"))[:MAX_CHECKPOINT_SHARDS + 1]  # each is opened as a regular file
    located = parse_json_text(read_text(index, limit=MAX_INDEX_FILE_BYTES, what="safetensors index"), str(index))
    weight_map = located.data.get("weight_map") if isinstance(located.data, dict) else None
    if not isinstance(weight_map, dict):
        raise located.error(("weight_map",), "expected a weight_map of tensor name to shard file")
    files: dict[str, Path] = {}
    for key, name in weight_map.items():
        path = _shard_path(folder, name, str(index), key)
        files.setdefault(str(name), path)
    if len(files) > MAX_CHECKPOINT_SHARDS:
        raise InputError(f"{len(files):,} shards; the limit is {MAX_CHECKPOINT_SHARDS:,}", file=str(index), field="weight_map")
    missing = [name for name, path in sorted(files.items()) if not is_regular_file(path)]
    if missing:
        raise InputError(f"shard {missing[0]} named in the index is missing", file=str(index), field="weight_map")
    return [files[name] for name in sorted(files)]


def load_safetensors_model(path: Path) -> ModelSpec:
    """A model from a Hugging Face folder or a single .safetensors file beside its config.json."""
    folder = path if is_folder(path) else path.parent
    config_path = folder / "config.json"
    if not is_regular_file(config_path):
        raise InputError("a safetensors checkpoint needs its config.json in the same folder", file=str(path))
    located = parse_json_text(read_text(config_path, limit=MAX_CONFIG_FILE_BYTES, what="config.json"), str(config_path))
    if not isinstance(located.data, dict):
        raise located.error((), "expected a JSON object at the top level")
    name = folder.name or path.stem
    model = build_model_spec(located.data, name=name, source=str(path), located=located, origin="checkpoint")
    files = _shards(folder) if is_folder(path) else [path]
    if len(files) > MAX_CHECKPOINT_SHARDS:
        raise InputError(f"more than {MAX_CHECKPOINT_SHARDS:,} safetensors files", file=str(path))
    if not files:
        return model.model_copy(update={"origin": "config"})
    tensors: list[HeaderTensor] = []
    for file in files:
        tensors += read_safetensors_header(file)[0]
        if len(tensors) > MAX_CHECKPOINT_TENSORS:
            raise InputError(f"more than {MAX_CHECKPOINT_TENSORS:,} tensors in the checkpoint", file=str(file))
    quant_located = located
    if isinstance(located.data.get("text_config"), dict):
        quant_located = Located({**located.data["text_config"], "quantization_config": located.data.get("quantization_config")},
                                located.marks, located.file)
    info = build_checkpoint_info(model, quant_located, tensors, str(path))
    return model.model_copy(update={"checkpoint": info})


def load_checkpoint_model(path: Path) -> ModelSpec:
    """Dispatch on what `path` is: a .gguf file, a .safetensors file, or a folder."""
    if path.suffix == ".gguf":
        return load_gguf_model(path)
    return load_safetensors_model(path)


def is_checkpoint(path: Path) -> bool:
    """True for a .gguf or .safetensors path that exists, or a folder with safetensors shards."""
    if path.suffix in (".gguf", ".safetensors"):
        return probe(path) is not None
    if not is_folder(path):
        return False
    return probe(path / "model.safetensors.index.json") is not None or any(True for _ in path.glob("*.safetensors"))
