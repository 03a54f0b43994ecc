"""The `plan memory` report: one dict (JSON/YAML) and its text rendering."""

from __future__ import annotations

from typing import Any

from planner.estimate.deepspeed import (
    estimate_deepspeed_zero2,
    estimate_deepspeed_zero3,
)
from planner.estimate.engines import EngineMemory
from planner.estimate.kv_cache import (
    estimate_kv_bytes_per_token,
    estimate_kv_bytes_per_token_layer,
)
from planner.estimate.memory import estimate_serving_memory, estimate_training_memory
from planner.estimate.parameters import estimate_model_tensors, estimate_parameters
from planner.estimate.seed import SEED_OVERHEAD_RANGE, estimate_seed_table
from planner.estimate.stage import MEMORY_FIELDS, MemoryEstimate
from planner.estimate.weights import estimate_weight_bytes
from planner.estimate.zero import estimate_zero_partition
from planner.report.table import to_size, to_text_table
from planner.schemas.model import ModelSpec
from planner.schemas.precision import COMPONENTS, PrecisionFormat, PrecisionMix
from planner.schemas.workload import Parallelism, ServeWorkload, TrainWorkload
from planner.units import to_gb, to_gib

UNITS = "bytes; GB = 10^9 bytes, GiB = 2^30 bytes"


def _device_dict(device: Any) -> dict[str, Any]:
    memory = {name: int(round(getattr(device, name))) for name in MEMORY_FIELDS}
    memory["total_bytes"] = sum(memory.values())
    out = {"stage": device.stage, "layers": list(device.layers), "memory": memory}
    if device.cpu_offload_bytes:
        out["cpu_offload_bytes"] = int(round(device.cpu_offload_bytes))
    if device.notes:
        out["notes"] = list(device.notes)
    return out


def _model_dict(model: ModelSpec) -> dict[str, Any]:
    breakdown = estimate_parameters(model)
    out: dict[str, Any] = {
        "name": model.name,
        "source": model.source,
        "architecture": model.architecture,
        "layers": model.num_layers,
        "hidden_size": model.hidden_size,
        "attention_heads": model.num_attention_heads,
        "kv_heads": model.num_key_value_heads,
        "head_dim": model.head_dim,
        "vocab_size": model.vocab_size,
        "max_context": model.max_context,
        "attention": "mla" if model.mla else ("hybrid" if "full" in model.layer_types and "sliding" in model.layer_types else ("sliding" if model.layer_types else "full")),
        "sliding_window": model.sliding_window if model.layer_types else None,
        "moe": None if model.moe is None else {
            "experts": model.moe.num_experts, "experts_per_token": model.moe.experts_per_token,
            "shared_experts": model.moe.num_shared_experts,
        },
        "parameters": {
            "total": breakdown.total_parameters,
            "active": breakdown.active_parameters,
            "by_component": {c: {"total": breakdown.total[c], "active": breakdown.active[c]} for c in COMPONENTS if breakdown.total[c]},
        },
    }
    if breakdown.mtp_parameters:
        out["parameters"]["mtp_not_served"] = breakdown.mtp_parameters
    if model.checkpoint is not None:
        out["checkpoint"] = _checkpoint_dict(model, breakdown.total_parameters)
    return out


def _checkpoint_dict(model: ModelSpec, config_parameters: int) -> dict[str, Any]:
    """What the checkpoint on disk holds, and where it disagrees with the config."""
    ckpt = model.checkpoint
    assert ckpt is not None
    served = [t for t in ckpt.tensors if t.layer is None or t.layer < model.num_layers]
    on_disk = sum(t.params for t in served)
    notes = list(ckpt.notes)
    if on_disk != config_parameters:
        notes.append(f"served parameters on disk {on_disk:,} differ from the config's {config_parameters:,} "
                     f"by {on_disk - config_parameters:+,}: planning with what is on disk")
    by_component: dict[str, dict[str, int]] = {}
    for t in served:
        entry = by_component.setdefault(t.component, {"parameters": 0, "bytes": 0})
        entry["parameters"] += t.params
        entry["bytes"] += t.bytes
    return {
        "format": ckpt.format, "quant_method": ckpt.quant_method, "source": ckpt.source,
        "parameters_served": on_disk, "bytes_served": sum(t.bytes for t in served),
        "parameters_in_file": sum(t.params for t in ckpt.tensors), "bytes_in_file": sum(t.bytes for t in ckpt.tensors),
        "storage_types": sorted({t.dtype for t in served}), "by_component": by_component, "notes": notes,
    }


def to_memory_dict(
    model: ModelSpec,
    mix: PrecisionMix,
    workload: ServeWorkload | TrainWorkload,
    parallelism: Parallelism,
    *,
    stages: list[range] | None = None,
    embedding_on_host: bool = False,
    engine: EngineMemory | None = None,
) -> dict[str, Any]:
    """Everything `plan memory` reports for a model with a known architecture (serving in the
    engine's accounting when one is given)."""
    weights = estimate_weight_bytes(model, mix)
    total_params = sum(t.params for t in estimate_model_tensors(model))
    by_component = {c: int(round(b)) for c, b in weights.by_component.items() if b}
    train = isinstance(workload, TrainWorkload)
    estimate: MemoryEstimate = (
        estimate_training_memory(model, mix, workload, parallelism, stages) if train
        else estimate_serving_memory(model, mix, workload, parallelism, stages, embedding_on_host, engine)
    )
    peak = _device_dict(estimate.peak)
    t = parallelism.tensor_parallel_size
    out: dict[str, Any] = {
        "units": UNITS,
        "model": _model_dict(model),
        "precision": {**mix.describe(), "average_bits_per_weight": round(weights.bits_per_weight(total_params), 4)},
        "workload": {"mode": "train" if train else "serve", **workload.model_dump()},
        "parallelism": parallelism.model_dump(),
        "weights": {"total_bytes": int(round(weights.total_bytes)), "by_component": by_component},
        "kv_cache": {
            "dtype": mix.kv_cache_dtype.id,
            "bytes_per_token": estimate_kv_bytes_per_token(model, mix.kv_cache_dtype),
            "bytes_per_token_per_layer_per_rank": estimate_kv_bytes_per_token_layer(model, mix.kv_cache_dtype, t),
        },
        "memory": {**peak["memory"], "stage": peak["stage"]},
        "devices": [_device_dict(d) for d in estimate.devices],
        "cluster": {
            "devices": t * parallelism.pipeline_parallel_size * parallelism.data_parallel_size,
            "total_bytes": int(round(estimate.cluster_bytes)),
        },
    }
    if not train:
        out["kv_cache"]["total_bytes_per_device"] = peak["memory"]["kv_cache_bytes"]
        settings = estimate.settings
        assert settings is not None
        out["engine_settings"] = {"batch_tokens": settings.batch_tokens, "max_sequences": settings.sequences(workload.users),
                                  "block_size": settings.block_size, "cuda_graphs": settings.cuda_graphs}
    return out


# Optimizer bytes per parameter without a model's shapes, fp32 master weights included when mixed
# precision (planner/estimate/optimizer.py has the per-tensor rules these reduce to).
QUICK_OPTIMIZER_BYTES = {"adamw": 12.0, "adam": 12.0, "adamw_8bit": 4 + 2 + 8 / 256, "adafactor": 4.0,
                         "lion": 8.0, "sgd_momentum": 8.0, "sgd": 4.0}


def to_quick_memory_dict(
    parameters: int, weights: PrecisionFormat, *, overhead_factor: float, runtime_reserve_bytes: int,
    training: TrainWorkload | None = None, data_parallel_size: int = 1,
) -> dict[str, Any]:
    """The seed's quick mode for a bare parameter count: N x B/8 x (1 + O), plus the TL;DR table.

    With `training`, model states follow the ZeRO paper (16-bit weights and gradients, fp32 master
    weights and optimizer states), partitioned by ZeRO stage over the data-parallel ranks.
    """
    if weights.is_mix:
        raise ValueError("mixed formats need the model's tensors")
    bits = weights.bits_per_weight()
    memory = {name: 0.0 for name in MEMORY_FIELDS}
    cpu = 0.0
    if training is None:
        memory["weights_bytes"] = parameters * bits / 8
    else:
        shards = estimate_zero_partition(training.zero_stage, data_parallel_size)
        memory["weights_bytes"] = parameters * 2 / shards.parameters
        memory["gradients_bytes"] = parameters * 2 / shards.gradients
        memory["optimizer_bytes"] = parameters * QUICK_OPTIMIZER_BYTES[training.optimizer] / shards.optimizer
        if training.offload != "none":
            cpu += memory["optimizer_bytes"]
            memory["optimizer_bytes"] = 0.0
        if training.offload == "optimizer+params":
            cpu += memory["weights_bytes"]
            memory["weights_bytes"] = 0.0
    memory["overhead_bytes"] = overhead_factor * memory["weights_bytes"] + runtime_reserve_bytes
    rounded = {k: int(round(v)) for k, v in memory.items()}
    rounded["total_bytes"] = sum(rounded.values())
    out: dict[str, Any] = {
        "units": UNITS,
        "model": {"name": f"{parameters:,} parameters", "parameters": {"total": parameters, "active": parameters}},
        "precision": {"weights": weights.id if training is None else "bf16 + fp32 master", "bits_per_weight": bits if training is None else 16},
        "formula": "N x B/8 x (1 + O) + runtime reserve (seed guide)" if training is None
        else f"ZeRO-{training.zero_stage} model states over {data_parallel_size} data-parallel rank(s) (Rajbhandari et al. 2020)",
        "overhead_factor": overhead_factor,
        "overhead_factor_range": list(SEED_OVERHEAD_RANGE),
        "memory": rounded,
        "seed_table_gb": {k: round(v, 4) for k, v in estimate_seed_table(to_gb(parameters)).items()},
        "kv_cache": None,
    }
    if cpu:
        out["cpu_offload_bytes"] = int(round(cpu))
    return out


def to_deepspeed_dict(
    parameters: int, largest_layer_params: int, *, zero_stage: int, gpus_per_node: int, nodes: int,
    offload: str,
) -> dict[str, Any]:
    """DeepSpeed's documented model-state estimate (GPU and CPU) for comparison with ours."""
    if zero_stage == 3:
        states = estimate_deepspeed_zero3(
            parameters, largest_layer_params, gpus_per_node=gpus_per_node, nodes=nodes,
            offload_optimizer=offload != "none", offload_params=offload == "optimizer+params",
        )
    else:
        states = estimate_deepspeed_zero2(parameters, gpus_per_node=gpus_per_node, nodes=nodes, offload_optimizer=offload != "none")
    return {
        "estimator": f"deepspeed estimate_zero{3 if zero_stage == 3 else 2}_model_states_mem_needs (documented form)",
        "parameters": parameters,
        "largest_layer_params": largest_layer_params,
        "gpu_bytes_per_device": int(states.gpu_bytes),
        "cpu_bytes_per_node": int(states.cpu_bytes),
    }


def _memory_rows(devices: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for name in (*MEMORY_FIELDS, "total_bytes"):
        label = name.removesuffix("_bytes").replace("_", " ")
        row = [label]
        for device in devices:
            gb, gib = to_size(device["memory"][name])
            row += [gb, gib]
        rows.append(row)
    return rows


def to_memory_text(report: dict[str, Any]) -> str:
    """The report as tables a person reads at a glance."""
    lines: list[str] = []
    model = report["model"]
    params = model["parameters"]
    if "by_component" not in params:
        lines.append(f"Model: {model['name']} (quick mode: {report['formula']})")
        lines.append(f"Weights: {report['precision']['weights']} at {report['precision']['bits_per_weight']:.4g} bits per weight; "
                     f"O = {report['overhead_factor']} (seed range {report['overhead_factor_range'][0]}-{report['overhead_factor_range'][1]})")
        lines.append("")
        lines.append(to_text_table(["part", "GB", "GiB"], [[r[0], r[1], r[2]] for r in _memory_rows([report])]))
        if report.get("cpu_offload_bytes"):
            gb, gib = to_size(report["cpu_offload_bytes"])
            lines.append(f"Host (CPU) memory for offloaded states: {gb} GB ({gib} GiB) per device")
        lines.append("")
        lines.append("Seed guide TL;DR for this size (weights only, O = 0):")
        lines.append(to_text_table(["format", "GB"], [[k, f"{v:,.2f}"] for k, v in report["seed_table_gb"].items()]))
        lines += _deepspeed_lines(report)
        return "\n".join(lines)
    lines.append(f"Model: {model['name']} ({model['architecture']}, {model['layers']} layers, "
                 f"attention {model['attention']}, context up to {model['max_context']:,})")
    if model.get("source"):
        lines.append(f"Source: {model['source']}")
    active = "" if params["active"] == params["total"] else f", active per token {params['active']:,}"
    lines.append(f"Parameters: {params['total']:,}{active}")
    if params.get("mtp_not_served"):
        lines.append(f"  (checkpoint also stores {params['mtp_not_served']:,} multi-token-prediction parameters that serving drops)")
    ckpt = model.get("checkpoint")
    if ckpt:
        lines.append(f"Checkpoint ({ckpt['format']}, {ckpt['quant_method'] or 'unquantised'}): {ckpt['parameters_served']:,} "
                     f"parameters served, {to_gb(ckpt['bytes_served']):,.2f} GB ({to_gib(ckpt['bytes_served']):,.2f} GiB) as stored")
        for note in ckpt["notes"]:
            lines.append(f"  note: {note}")
    lines.append("")
    precision = report["precision"]
    rows = []
    for component, counts in params["by_component"].items():
        size = report["weights"]["by_component"].get(component, 0)
        gb, gib = to_size(size)
        fmt = "unquantised" if component in ("router", "norms") else precision[component]
        rows.append([component, f"{counts['total']:,}", f"{counts['active']:,}", fmt, gb, gib])
    gb, gib = to_size(report["weights"]["total_bytes"])
    rows.append(["total", f"{params['total']:,}", f"{params['active']:,}", f"{precision['average_bits_per_weight']:.3f} b/w", gb, gib])
    lines.append(to_text_table(["component", "parameters", "active", "format", "GB", "GiB"], rows, right=[False, True, True, False, True, True]))
    lines.append("")
    kv = report["kv_cache"]
    lines.append(f"KV cache ({kv['dtype']}): {kv['bytes_per_token']:,.0f} bytes per token over all layers for one sequence")
    workload = report["workload"]
    par = report["parallelism"]
    if workload["mode"] == "serve":
        engine = report["engine_settings"]
        lines.append(f"Workload: serve {workload['users']} user(s) x {workload['context']:,} tokens, "
                     f"{engine['batch_tokens']:,} tokens per forward pass, up to {engine['max_sequences']} sequences, "
                     f"O = {workload['overhead_factor']}")
    else:
        lora = workload.get("lora")
        lines.append(f"Workload: train, micro-batch {workload['micro_batch_size']} x {workload['sequence_length']:,} tokens, "
                     f"{workload['optimizer']}, ZeRO-{workload['zero_stage']}, recompute {workload['recompute']}"
                     + (f", LoRA rank {lora['rank']}" if lora else ""))
    lines.append(f"Parallelism: tensor {par['tensor_parallel_size']} x pipeline {par['pipeline_parallel_size']} "
                 f"x data {par['data_parallel_size']} = {report['cluster']['devices']} device(s)")
    lines.append("")
    devices = report["devices"]
    header = ["per device"]
    for d in devices:
        label = f"stage {d['stage']} L{d['layers'][0]}-{d['layers'][1] - 1}" if len(devices) > 1 else "device"
        header += [f"{label} GB", "GiB"]
    lines.append(to_text_table(header, _memory_rows(devices)))
    offloaded = [d.get("cpu_offload_bytes", 0) for d in devices]
    if any(offloaded):
        gb, gib = to_size(max(offloaded))
        lines.append(f"Host (CPU) memory for offloaded states: {gb} GB ({gib} GiB) per device")
    gb, gib = to_size(report["cluster"]["total_bytes"])
    lines.append(f"All devices together: {gb} GB ({gib} GiB)")
    lines += _deepspeed_lines(report)
    return "\n".join(lines)


def _deepspeed_lines(report: dict[str, Any]) -> list[str]:
    if "deepspeed" not in report:
        return []
    ds = report["deepspeed"]
    _, g_gib = to_size(ds["gpu_bytes_per_device"])
    _, c_gib = to_size(ds["cpu_bytes_per_node"])
    return ["", f"DeepSpeed's estimator ({ds['estimator']}): {g_gib} GiB per GPU, {c_gib} GiB CPU per node (model states only)"]
