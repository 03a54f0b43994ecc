"""Whether an engine runs on a device, and runs a precision mix there (its profile's `runs_on`,
`weights` and `kv_cache`). One rule, used by the candidates, the engine choice and the checker."""

from __future__ import annotations

from planner.estimate.weights import estimate_weight_bytes
from planner.schemas.engine import EngineProfile, FormatSupport, Where
from planner.schemas.hardware import HardwareSpec
from planner.schemas.model import ModelSpec
from planner.schemas.precision import FormatFamily, PrecisionMix

# Storage labels of checkpoint tensors (safetensors dtypes, quantisation labels, GGML types) by family.
_CHECKPOINT_FAMILIES: dict[str, FormatFamily] = {
    "bf16": "float", "f16": "float", "f32": "float", "f64": "float", "fp16": "float", "fp32": "float",
    "f8_e4m3": "fp8", "f8_e5m2": "fp8", "nf4": "nf4", "mxfp4": "mxfp4", "int8": "int8", "i8": "int8",
}


def _covers(where: Where, spec: HardwareSpec) -> bool:
    return where.covers(spec)


def runs_on(profile: EngineProfile, spec: HardwareSpec) -> bool:
    """True when the engine runs on this device at all."""
    return any(_covers(where, spec) for where in profile.runs_on)


def family_of(format_id: str, mix: PrecisionMix) -> FormatFamily | None:
    """The family of a tensor's resolved format id (None for unquantised 1-D tensors)."""
    if format_id.startswith("unquantised-"):
        return None
    fmt = mix.formats.get(format_id)
    if fmt is not None:
        return fmt.family
    label = format_id.lower()
    if label.startswith(("gptq-int", "awq-int", "int2", "int3", "int4", "int5", "int6", "int7")):
        return "int4"
    if label in _CHECKPOINT_FAMILIES:
        return _CHECKPOINT_FAMILIES[label]
    if label == "u8":
        return "int8"
    return "gguf"  # a GGML type name (q4_k, q8_0, ...) read from a GGUF file


def mix_families(model: ModelSpec, mix: PrecisionMix) -> tuple[FormatFamily, ...]:
    """Every weight family the mix stores the model's matrices in, in a fixed order."""
    found: list[FormatFamily] = []
    for item in estimate_weight_bytes(model, mix).tensors:
        family = family_of(item.format_id, mix)
        if family is not None and family not in found:
            found.append(family)
    if model.checkpoint is not None and model.checkpoint.format == "gguf" and mix.weights.id == "checkpoint":
        found = ["gguf" if f in ("float", "int8") else f for f in found]  # a GGUF file runs as GGUF whatever its types
        found = list(dict.fromkeys(found))
    return tuple(found)


def _support(table: tuple[FormatSupport, ...], family: str, spec: HardwareSpec) -> FormatSupport | None:
    for entry in table:
        if entry.family == family and (not entry.where or any(_covers(w, spec) for w in entry.where)):
            return entry
    return None


def check_mix_on_device(profile: EngineProfile, model: ModelSpec, mix: PrecisionMix, spec: HardwareSpec) -> str | None:
    """Why the engine cannot run this mix on this device, or None when it can."""
    if not runs_on(profile, spec):
        return f"{profile.name} does not run on {spec.name}"
    for family in mix_families(model, mix):
        if _support(profile.weights, family, spec) is None:
            return f"{profile.name} does not run {family} weights on {spec.id}"
    if profile.kind == "serve" and _support(profile.kv_cache, mix.kv_cache_dtype.family, spec) is None:
        return f"{profile.name} does not run a {mix.kv_cache_dtype.id} KV cache on {spec.id}"
    return None
