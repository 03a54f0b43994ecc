"""`plan memory`: read the model and flags, estimate, return the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from planner.errors import InputError
from planner.loaders.catalog import load_model
from planner.loaders.formats import build_precision_mix, resolve_weight_format
from planner.report.memory import to_deepspeed_dict, to_memory_dict, to_memory_text, to_quick_memory_dict
from planner.schemas.model import ModelSpec
from planner.schemas.workload import (
    DEFAULT_OVERHEAD_FACTOR,
    DEFAULT_RUNTIME_RESERVE_BYTES,
    LoRASpec,
    Parallelism,
    ServeWorkload,
    TrainWorkload,
)
from planner.units import GiB, parse_count

DEFAULT_CONTEXT = 4096


def check_weights_choice(weights: str, model: ModelSpec) -> None:
    """`--weights checkpoint` means "as stored on disk", which needs a checkpoint."""
    if weights.strip().lower() == "checkpoint" and model.checkpoint is None:
        raise InputError("'checkpoint' means the sizes stored on disk; pass a .safetensors or .gguf checkpoint with --model",
                         field="--weights")


def _check_parallelism(model: ModelSpec, par: Parallelism) -> None:
    t, p = par.tensor_parallel_size, par.pipeline_parallel_size
    if model.num_attention_heads % t:
        raise InputError(
            f"{model.num_attention_heads} attention heads do not divide across {t} tensor-parallel ranks",
            field="--tensor-parallel-size",
        )
    kv = model.num_key_value_heads
    if kv % t and t % kv:
        raise InputError(
            f"{kv} KV heads and tensor-parallel size {t}: one must divide the other", field="--tensor-parallel-size"
        )
    if p > model.num_layers:
        raise InputError(f"{p} pipeline stages for {model.num_layers} layers", field="--pipeline-parallel-size")


def to_input_error(exc: ValidationError) -> InputError:
    first = exc.errors()[0]
    field = ".".join(map(str, first["loc"])) or None
    return InputError(first["msg"].removeprefix("Value error, "), field=f"--{field.replace('_', '-')}" if field else None)


def _train_workload(opts: dict[str, Any], sequence_length: int, overhead: float, reserve: int) -> TrainWorkload:
    lora = LoRASpec(rank=opts["lora_rank"] or 16) if (opts["lora_rank"] or opts["qlora"]) else None
    try:
        return TrainWorkload(
            micro_batch_size=opts["micro_batch_size"], sequence_length=sequence_length,
            optimizer=opts["optimizer"], mixed_precision=not opts["fp32_training"], recompute=opts["recompute"],
            sequence_parallel=opts["sequence_parallel"], zero_stage=opts["zero_stage"],
            offload_optimizer=opts["offload_optimizer"], offload_params=opts["offload_params"], lora=lora,
            overhead_factor=overhead, runtime_reserve_bytes=reserve,
        )
    except ValidationError as exc:
        raise to_input_error(exc) from None


def _largest_tensor(model: ModelSpec) -> int:
    from planner.estimate.parameters import estimate_model_tensors

    return max(t.params for t in estimate_model_tensors(model))


def run_memory(opts: dict[str, Any]) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    """Build the `plan memory` report from parsed CLI options."""
    if bool(opts["model_name"]) == bool(opts["params"]):
        raise InputError("give exactly one of --model NAME|PATH or --params SIZE", field="--model")
    overhead = DEFAULT_OVERHEAD_FACTOR if opts["overhead"] is None else opts["overhead"]
    reserve = DEFAULT_RUNTIME_RESERVE_BYTES if opts["runtime_reserve_gib"] is None else int(opts["runtime_reserve_gib"] * GiB)
    if opts["params"]:
        if opts["tensor_parallel_size"] > 1 or opts["pipeline_parallel_size"] > 1:
            raise InputError("a bare parameter count has no layers or heads to split; use --model for tensor or "
                             "pipeline parallelism", field="--tensor-parallel-size" if opts["tensor_parallel_size"] > 1
                             else "--pipeline-parallel-size")
        parameters = parse_count(opts["params"])
        weights = resolve_weight_format(opts["weights"] or "bf16")
        if weights.is_mix:
            raise InputError(
                f"'{weights.id}' mixes formats per tensor; use --model to size it, or a plain format with --params",
                field="--weights",
            )
        training = _train_workload(opts, opts["sequence_length"] or DEFAULT_CONTEXT, overhead, reserve) if opts["mode"] == "train" else None
        report = to_quick_memory_dict(
            parameters, weights, overhead_factor=overhead, runtime_reserve_bytes=reserve,
            training=training, data_parallel_size=opts["data_parallel_size"],
        )
        if opts["mode"] == "train" and opts["estimator"] == "deepspeed":
            largest = parse_count(opts["largest_layer_params"], field="--largest-layer-params") if opts["largest_layer_params"] else 0
            if opts["zero_stage"] == 3 and not largest:
                raise InputError("DeepSpeed's ZeRO-3 estimate needs --largest-layer-params", field="--largest-layer-params")
            report["deepspeed"] = to_deepspeed_dict(
                parameters, largest, zero_stage=opts["zero_stage"], gpus_per_node=opts["data_parallel_size"], nodes=1,
                offload_optimizer=opts["offload_optimizer"], offload_params=opts["offload_params"],
            )
        return report, to_memory_text

    model = load_model(opts["model_name"])
    context = opts["context"] or min(DEFAULT_CONTEXT, model.max_context)
    if context > model.max_context:
        raise InputError(
            f"{context:,} tokens exceeds {model.name}'s maximum context of {model.max_context:,}", field="--context"
        )
    default_format = model.dtype
    weights = opts["weights"] or ("nf4" if opts["qlora"] else ("checkpoint" if model.checkpoint else default_format))
    check_weights_choice(weights, model)
    mix = build_precision_mix(
        weights, opts["kv_cache"] or default_format,
        embedding=opts["embedding_fmt"], lm_head=opts["lm_head_fmt"], attention=opts["attention_fmt"],
        dense_mlp=opts["dense_mlp_fmt"], experts=opts["experts_fmt"], shared_experts=opts["shared_experts_fmt"],
    )
    try:
        parallelism = Parallelism(
            tensor_parallel_size=opts["tensor_parallel_size"],
            pipeline_parallel_size=opts["pipeline_parallel_size"],
            data_parallel_size=opts["data_parallel_size"],
        )
        _check_parallelism(model, parallelism)
        if opts["mode"] == "serve":
            workload: ServeWorkload | TrainWorkload = ServeWorkload(
                users=opts["users"], context=context, prefill_chunk=opts["prefill_chunk"],
                overhead_factor=overhead, runtime_reserve_bytes=reserve,
            )
        else:
            workload = _train_workload(opts, opts["sequence_length"] or context, overhead, reserve)
    except ValidationError as exc:
        raise to_input_error(exc) from None
    report = to_memory_dict(model, mix, workload, parallelism)
    if isinstance(workload, TrainWorkload) and opts["estimator"] == "deepspeed":
        largest = parse_count(opts["largest_layer_params"], field="--largest-layer-params") if opts["largest_layer_params"] else _largest_tensor(model)
        report["deepspeed"] = to_deepspeed_dict(
            report["model"]["parameters"]["total"], largest, zero_stage=workload.zero_stage,
            gpus_per_node=parallelism.data_parallel_size, nodes=1,
            offload_optimizer=workload.offload_optimizer, offload_params=workload.offload_params,
        )
    return report, to_memory_text
