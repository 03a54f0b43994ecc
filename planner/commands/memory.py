"""`plan memory`: read the model and options, estimate, return the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from planner.commands.args import MemoryArgs, TrainingArgs
from planner.errors import InputError
from planner.estimate.engine_support import mix_families
from planner.estimate.engines import build_engine_memory
from planner.estimate.parallelism import (
    check_pipeline_parallel_size,
    check_tensor_parallel_size,
)
from planner.estimate.shards import check_layer_split, ranges_of
from planner.estimate.zero import check_zero_layout
from planner.limits import MAX_PARAMETER_COUNT
from planner.loaders.catalog import load_model
from planner.loaders.engines import find_engine, load_engine_catalog
from planner.loaders.formats import build_precision_mix, resolve_weight_format
from planner.report.memory import (
    to_deepspeed_dict,
    to_memory_dict,
    to_memory_text,
    to_quick_memory_dict,
)
from planner.schemas.engine import EngineProfile
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.serving import DEFAULT_RUNTIME_RESERVE_BYTES
from planner.schemas.workload import (
    SEED_OVERHEAD_FACTOR,
    LoRASpec,
    Parallelism,
    ServeWorkload,
    TrainWorkload,
)
from planner.units import gib_to_bytes, parse_count

DEFAULT_CONTEXT = 4096


def check_weights_choice(weights: str, model: ModelSpec) -> None:
    """`--weights checkpoint` means "as stored on disk", which needs a checkpoint."""
    if weights.strip().lower() == "checkpoint" and model.checkpoint is None:
        raise InputError("'checkpoint' means the sizes stored on disk; pass a .safetensors or .gguf checkpoint with --model",
                         field="--weights")


def resolve_context(requested: int | None, model: ModelSpec, field: str = "--context") -> int:
    """The context asked for, or 4,096 capped at the model's maximum; never beyond the maximum."""
    context = requested or min(DEFAULT_CONTEXT, model.max_context)
    if context > model.max_context:
        raise InputError(f"{context:,} tokens exceeds {model.name}'s maximum context of {model.max_context:,}", field=field)
    return context


def resolve_mix(args: TrainingArgs, model: ModelSpec, weights: str | None = None) -> PrecisionMix:
    """The precision mix the options name. Unset, the weights follow how the model ships: a
    checkpoint as stored, a quantised release in its own format (DeepSeek-V3 in block FP8,
    gpt-oss with MXFP4 experts), else its dtype; nf4 for QLoRA. `weights` replaces the default
    (an engine's fallback) but never what the user asked for."""
    overrides = {"embedding": args.embedding, "lm_head": args.lm_head, "attention": args.attention,
                 "dense_mlp": args.dense_mlp, "experts": args.experts, "shared_experts": args.shared_experts}
    chosen = args.weights or weights
    if chosen is None:
        if args.qlora:
            chosen = "nf4"
        elif model.checkpoint:
            chosen = "checkpoint"
        elif model.shipped is not None:
            chosen = model.shipped.weights
            overrides = {**model.shipped.overrides, **{k: v for k, v in overrides.items() if v}}
        else:
            chosen = model.dtype
    check_weights_choice(chosen, model)
    kv = args.kv_cache
    if kv is not None and kv.strip().lower() == "auto":
        kv = None  # the engines' "auto": the model's own dtype
    return build_precision_mix(chosen, kv or model.dtype, **overrides)


def resolve_overhead(args: TrainingArgs, *, exact: bool) -> float:
    """--overhead, or its default: 0 when the model is accounted exactly (the engine's own
    overheads are counted), the seed's 0.1 for a bare parameter count."""
    if args.overhead is not None:
        return args.overhead
    return 0.0 if exact else SEED_OVERHEAD_FACTOR


def resolve_reserve(args: TrainingArgs) -> int | None:
    """--runtime-reserve-gib in bytes, or None: the engine's own estimate."""
    return None if args.runtime_reserve_gib is None else gib_to_bytes(args.runtime_reserve_gib)


def resolve_training_reserve(args: TrainingArgs) -> int:
    """--runtime-reserve-gib in bytes, or the fixed reserve training assumes (0.35 GiB)."""
    reserve = resolve_reserve(args)
    return DEFAULT_RUNTIME_RESERVE_BYTES if reserve is None else reserve


def resolve_lora(args: TrainingArgs) -> LoRASpec | None:
    """Adapters for --lora-rank or --qlora (rank 16 unless given)."""
    return LoRASpec(rank=args.lora_rank or 16) if (args.lora_rank or args.qlora) else None


def _fixed(value: str | int, default: Any) -> Any:
    return default if value == "auto" else value


def _train_workload(args: MemoryArgs, sequence_length: int, overhead: float) -> TrainWorkload:
    zero, offload = int(_fixed(args.zero_stage, 0)), str(_fixed(args.offload, "none"))
    problem = check_zero_layout(zero, (args.data_parallel_size or 1), offload)
    if problem:
        raise InputError(problem, field="--offload" if "offload" in problem else "--zero-stage")
    return TrainWorkload(
        micro_batch_size=args.micro_batch_size, sequence_length=sequence_length, optimizer=args.optimizer,
        mixed_precision=not args.fp32_training, recompute=_fixed(args.recompute, "none"),
        sequence_parallel=args.sequence_parallel, zero_stage=zero, offload=offload, lora=resolve_lora(args),
        overhead_factor=overhead, runtime_reserve_bytes=resolve_training_reserve(args),
    )


def _engine_for_memory(args: MemoryArgs, model: ModelSpec, mix: PrecisionMix) -> EngineProfile | None:
    """--engine for `plan memory`: it must run the mix's formats on some hardware."""
    if not args.engine:
        return None
    profile = find_engine(args.engine, kind=args.mode)
    families = mix_families(model, mix)
    missing = [f for f in families if not any(s.family == f for s in profile.weights)]
    if profile.kind == "serve" and not any(s.family == mix.kv_cache_dtype.family for s in profile.kv_cache):
        missing.append(f"a {mix.kv_cache_dtype.id} KV cache")
    if missing:
        able = [p.id for p in load_engine_catalog().values() if p.kind == args.mode and all(
            any(s.family == f for s in p.weights) for f in families)]
        raise InputError(f"{profile.name} does not run {', '.join(missing)}; engines that run these weights: "
                         f"{', '.join(able) or 'none'}", field="--engine")
    return profile


def _largest_tensor(model: ModelSpec) -> int:
    from planner.estimate.parameters import estimate_model_tensors

    return max(t.params for t in estimate_model_tensors(model))


def _quick(args: MemoryArgs) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    """The seed's estimate from a bare parameter count."""
    parameters = parse_count(args.params or "", maximum=MAX_PARAMETER_COUNT)
    weights = resolve_weight_format(args.weights or "bf16")
    if weights.is_mix:
        raise InputError(f"'{weights.id}' mixes formats per tensor; use --model to size it, or a plain format with --params",
                         field="--weights")
    overhead = resolve_overhead(args, exact=False)
    training = _train_workload(args, args.sequence_length or DEFAULT_CONTEXT, overhead) if args.mode == "train" else None
    report = to_quick_memory_dict(parameters, weights, overhead_factor=overhead, runtime_reserve_bytes=resolve_training_reserve(args),
                                  training=training, data_parallel_size=(args.data_parallel_size or 1))
    if training is not None and args.estimator == "deepspeed":
        largest = parse_count(args.largest_layer_params, field="--largest-layer-params", maximum=MAX_PARAMETER_COUNT) if args.largest_layer_params else 0
        if training.zero_stage == 3 and not largest:
            raise InputError("DeepSpeed's ZeRO-3 estimate needs --largest-layer-params", field="--largest-layer-params")
        report["deepspeed"] = to_deepspeed_dict(parameters, largest, zero_stage=training.zero_stage,
                                                gpus_per_node=(args.data_parallel_size or 1), nodes=1, offload=training.offload)
    return report, to_memory_text


def run_memory(args: MemoryArgs) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    """The `plan memory` report and its renderer."""
    if args.params:
        return _quick(args)
    model = load_model(args.model or "")
    context = resolve_context(args.context, model)
    mix = resolve_mix(args, model)
    engine = _engine_for_memory(args, model, mix)
    stages_given = len(args.layer_split) if args.layer_split else None
    parallelism = Parallelism(tensor_parallel_size=args.tensor_parallel_size or 1,
                              pipeline_parallel_size=args.pipeline_parallel_size or stages_given or 1,
                              data_parallel_size=args.data_parallel_size or 1)
    for problem, option in ((check_tensor_parallel_size(model, parallelism.tensor_parallel_size), "--tensor-parallel-size"),
                            (check_pipeline_parallel_size(model, parallelism.pipeline_parallel_size), "--pipeline-parallel-size"),
                            (check_layer_split(model.num_layers, args.layer_split) if args.layer_split else None, "--layer-split")):
        if problem:
            raise InputError(problem, field=option)
    stages = ranges_of(args.layer_split) if args.layer_split else None
    overhead = resolve_overhead(args, exact=True)
    if args.mode == "serve":
        workload: ServeWorkload | TrainWorkload = ServeWorkload(
            users=args.users, context=context, prefill_chunk=args.prefill_chunk, overhead_factor=overhead,
            runtime_reserve_bytes=resolve_reserve(args))
    else:
        workload = _train_workload(args, args.sequence_length or context, overhead)
    from planner.commands.engine import resolve_version

    version = resolve_version(engine, args.engine_version) if engine is not None else None
    memory = None
    if engine is not None and engine.kind == "serve":
        memory = build_engine_memory(engine, version, enforce_eager=args.enforce_eager)
    report = to_memory_dict(model, mix, workload, parallelism, stages=stages,
                            embedding_on_host=bool(engine and engine.layout.embedding_on_host), engine=memory)
    if engine is not None:
        report["engine"] = {"id": engine.id, "name": engine.name, "version": version}
    if isinstance(workload, TrainWorkload) and args.estimator == "deepspeed":
        largest = (parse_count(args.largest_layer_params, field="--largest-layer-params", maximum=MAX_PARAMETER_COUNT) if args.largest_layer_params
                   else _largest_tensor(model))
        report["deepspeed"] = to_deepspeed_dict(
            report["model"]["parameters"]["total"], largest, zero_stage=workload.zero_stage,
            gpus_per_node=parallelism.data_parallel_size, nodes=1, offload=workload.offload)
    return report, to_memory_text
