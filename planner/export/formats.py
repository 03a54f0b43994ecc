"""How each engine is told the plan's precision: the flags for its weight format and its name for
the KV-cache dtype, or a refusal naming what it lacks. Names are the engines' own choices:
vLLM 0.33.0 --quantization (model_executor/layers/quantization/__init__.py) and --kv-cache-dtype
(config/cache.py CacheDType); SGLang 0.5.23 QUANTIZATION_CHOICES (arg_groups/choices.py) and
--kv-cache-dtype (arg_groups/fields/model.py); llama.cpp --cache-type-k/v (common/arg.cpp
kv_cache_types)."""

from __future__ import annotations

from planner.export.bundle import ExportRefused
from planner.export.context import ExportContext

_FLOAT_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

# weights id -> (--quantization value or None, what the checkpoint must be when the engine reads it from its config)
_QUANT: dict[str, dict[str, tuple[str | None, str | None]]] = {
    "vllm": {
        "fp8": ("fp8", None),  # online FP8 of a 16-bit checkpoint, or an FP8 checkpoint
        "fp8_block128": (None, "an FP8 block-scaled checkpoint (its config.json quantization_config says fp8)"),
        "gptq-int4": ("gptq", "a GPTQ int4 checkpoint"),
        "awq-int4": ("awq", "an AWQ int4 checkpoint"),
        "int4": (None, "an int4 AWQ or GPTQ checkpoint; vLLM reads the method from its quantization_config"),
        "int8": (None, "an int8 compressed-tensors (W8A16 or W8A8) checkpoint"),
        "mxfp4": (None, "an MXFP4 checkpoint (gpt-oss ships as one)"),
        "nvfp4": (None, "an NVFP4 ModelOpt checkpoint"),
        "checkpoint": (None, None),
    },
    "sglang": {
        "fp8": ("fp8", None),
        "fp8_block128": (None, "an FP8 block-scaled checkpoint (its quantization_config says fp8)"),
        "gptq-int4": ("gptq", "a GPTQ int4 checkpoint"),
        "awq-int4": ("awq", "an AWQ int4 checkpoint"),
        "int4": (None, "an int4 AWQ or GPTQ checkpoint; SGLang reads the method from its quantization_config"),
        "int8": (None, "an int8 compressed-tensors checkpoint"),
        "nf4": ("bitsandbytes", "a bitsandbytes NF4 checkpoint, or a 16-bit one quantised at load"),
        "mxfp4": (None, "an MXFP4 checkpoint"),
        "nvfp4": (None, "an NVFP4 ModelOpt checkpoint"),
        "checkpoint": (None, None),
    },
}

_KV: dict[str, dict[str, str]] = {
    "vllm": {"bf16": "bfloat16", "fp16": "float16", "fp8": "fp8", "fp8_e5m2": "fp8_e5m2"},
    "sglang": {"bf16": "bf16", "fp8": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"},
    "llama.cpp": {"fp16": "f16", "bf16": "bf16", "fp32": "f32", "q8_0": "q8_0", "q4_0": "q4_0"},
}


def engine_weight_flags(engine: str, weights: str, context: ExportContext) -> tuple[list[str], str | None]:
    """The flags that load the plan's weight format, and what the checkpoint must be (or None)."""
    if weights in _FLOAT_DTYPE:
        return ["--dtype", _FLOAT_DTYPE[weights]], None
    table = _QUANT[engine]
    if weights not in table:
        raise ExportRefused(f"{engine} has no way to load {weights} weights; plan with weights it runs "
                            f"({', '.join(sorted([*_FLOAT_DTYPE, *table]))})", field="--to")
    method, needs = table[weights]
    flags = ["--quantization", method] if method else []
    if weights == "fp8" and context.model.dtype not in ("bf16", "fp16", "fp32"):
        flags = []  # the checkpoint is FP8 already and says so
    return flags, (f"It must be {needs}." if needs else None)


def engine_kv_dtype(engine: str, kv: str, *, weights: str | None = None) -> str:
    """The engine's name for the plan's KV-cache dtype."""
    table = _KV[engine]
    if engine == "sglang" and kv == "fp16" and weights == "fp16":
        return "auto"  # SGLang has no fp16 choice; auto follows the fp16 model dtype
    if kv not in table:
        raise ExportRefused(f"{engine} has no {kv} KV cache (its choices: {', '.join(sorted(set(table.values())))})",
                            field="--to")
    return table[kv]
