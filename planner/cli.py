"""The `plan` command line. The only module that prints, writes files and chooses exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from planner.errors import InputError, PlannerError

EXIT_OK, EXIT_INFEASIBLE, EXIT_BAD_INPUT = 0, 1, 2


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn PlannerError into a one-line message and its exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PlannerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def _emit(data: Any, fmt: str, text: Callable[[Any], str]) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    elif fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, width=120).rstrip())
    else:
        click.echo(text(data))


FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True,
    help="Output format.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="planner")
def main() -> None:
    """Will this LLM fit on these machines, how should it be split, and how fast will it run?"""


# ----------------------------------------------------------------------------- plan memory
@main.command()
@click.option("--model", "model_name", metavar="NAME|PATH", help="Catalog name, HF repo id, config.json or a folder with one.")
@click.option("--params", metavar="SIZE", help="A bare parameter count (70B, 7.5e9) for the seed's quick estimate.")
@click.option("--weights", default=None, metavar="FMT", help="Weight format (bf16, fp8, int8, int4, nf4, mxfp4, q4_k_m...). Default: the checkpoint's dtype.")
@click.option("--kv-cache", "kv_cache", default=None, metavar="FMT", help="KV-cache dtype (fp16, bf16, fp8, int8, int4, q8_0, q4_0). Default: the checkpoint's dtype.")
@click.option("--embedding", "embedding_fmt", metavar="FMT", help="Format override for the token embedding.")
@click.option("--lm-head", "lm_head_fmt", metavar="FMT", help="Format override for the output head.")
@click.option("--attention", "attention_fmt", metavar="FMT", help="Format override for attention projections.")
@click.option("--dense-mlp", "dense_mlp_fmt", metavar="FMT", help="Format override for dense MLPs.")
@click.option("--experts", "experts_fmt", metavar="FMT", help="Format override for routed experts.")
@click.option("--shared-experts", "shared_experts_fmt", metavar="FMT", help="Format override for shared experts.")
@click.option("--users", type=click.IntRange(min=1), default=1, show_default=True, help="Concurrent sequences.")
@click.option("--context", type=click.IntRange(min=1), default=None, help="Tokens per sequence [default: 4096, capped at the model's maximum].")
@click.option("--prefill-chunk", type=click.IntRange(min=1), default=2048, show_default=True, help="Tokens per forward pass (vLLM max_num_batched_tokens).")
@click.option("--overhead", type=click.FloatRange(0, 1), default=None, help="The seed's overhead factor O on weights [default: 0.1; seed range 0.1-0.3].")
@click.option("--runtime-reserve-gib", type=click.FloatRange(min=0), default=None, help="Fixed per-device runtime memory in GiB [default: 0.35].")
@click.option("--mode", type=click.Choice(["serve", "train"]), default="serve", show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "adam", "adamw_8bit", "adafactor", "lion", "sgd_momentum", "sgd"]), default="adamw", show_default=True)
@click.option("--zero-stage", type=click.IntRange(0, 3), default=0, show_default=True)
@click.option("--micro-batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--sequence-length", type=click.IntRange(min=1), default=None, help="Training sequence length [default: --context].")
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none", show_default=True)
@click.option("--sequence-parallel", is_flag=True, help="Megatron sequence parallelism (training).")
@click.option("--offload-optimizer", is_flag=True, help="Optimizer states in CPU memory (ZeRO-Offload).")
@click.option("--offload-params", is_flag=True, help="Parameters in CPU memory (ZeRO-3 only).")
@click.option("--fp32-training", is_flag=True, help="Train in fp32 instead of mixed precision.")
@click.option("--lora-rank", type=click.IntRange(min=1), default=None, help="Train LoRA adapters of this rank on a frozen base.")
@click.option("--qlora", is_flag=True, help="QLoRA: frozen base in nf4 plus LoRA adapters (rank 16 unless --lora-rank).")
@click.option("--estimator", type=click.Choice(["planner", "deepspeed"]), default="planner", show_default=True, help="Also show DeepSpeed's own model-state estimate (training).")
@click.option("--largest-layer-params", metavar="SIZE", help="Largest layer's parameters for DeepSpeed's ZeRO-3 estimate.")
@click.option("--tensor-parallel-size", "-tp", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--pipeline-parallel-size", "-pp", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--data-parallel-size", "-dp", type=click.IntRange(min=1), default=1, show_default=True)
@FORMAT_OPTION
@_handle_errors
def memory(**opts: Any) -> None:
    """Memory per device to serve or train a model."""
    from planner.commands.memory import run_memory

    report, text = run_memory(opts)
    _emit(report, opts["fmt"], text)


# ----------------------------------------------------------------------------- plan deploy
@main.command()
@click.option("--inventory", required=True, type=click.Path(dir_okay=False), help="Inventory YAML (see inventories/).")
@click.option("--model", "model_name", required=True, metavar="NAME|PATH", help="Catalog name, HF repo id, config.json or a folder with one.")
@click.option("--weights", default=None, metavar="FMT", help="Weight format [default: the checkpoint's dtype].")
@click.option("--kv-cache", "kv_cache", default=None, metavar="FMT", help="KV-cache dtype [default: the checkpoint's dtype].")
@click.option("--users", type=click.IntRange(min=1), default=1, show_default=True, help="Concurrent users.")
@click.option("--context", type=click.IntRange(min=1), default=None, help="Tokens per user [default: 4096, capped at the model's maximum].")
@click.option("--prompt-tokens", type=click.IntRange(min=1), default=None, help="Prompt length for time to first token [default: half the context].")
@click.option("--prefill-chunk", type=click.IntRange(min=1), default=2048, show_default=True, help="Tokens per forward pass (vLLM max_num_batched_tokens).")
@click.option("--min-tokens-per-s", type=click.FloatRange(min=0, min_open=True), default=None, help="Every user must decode at least this fast.")
@click.option("--objective", type=click.Choice(["throughput", "latency", "cost", "devices"]), default="throughput", show_default=True)
@click.option("--gpu-memory-utilization", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True, help="Share of GPU memory the engine takes (vLLM).")
@click.option("--overhead", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="The seed's O on weights, on top of the engine accounting.")
@click.option("--runtime-reserve-gib", type=click.FloatRange(min=0), default=None, help="Per-device memory outside the engine [default: 0.35].")
@click.option("--time-limit", type=click.FloatRange(min=0.1), default=60.0, show_default=True, help="Solver wall-clock limit, seconds.")
@click.option("--mode", type=click.Choice(["serve", "train"]), default="serve", show_default=True)
@click.option("--global-batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Training: sequences per optimizer step.")
@click.option("--micro-batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Training: sequences per device per micro-step.")
@click.option("--sequence-length", type=click.IntRange(min=1), default=None, help="Training: tokens per sequence [default: --context or 4096].")
@click.option("--optimizer", type=click.Choice(["adamw", "adam", "adamw_8bit", "adafactor", "lion", "sgd_momentum", "sgd"]), default="adamw", show_default=True)
@click.option("--recompute", type=click.Choice(["auto", "none", "selective", "full"]), default="auto", show_default=True, help="Training: activation recomputation.")
@click.option("--zero-stage", type=click.Choice(["auto", "0", "1", "2", "3"]), default="auto", show_default=True, help="Training: ZeRO stage.")
@click.option("--offload", type=click.Choice(["auto", "none", "optimizer", "optimizer+params"]), default="auto", show_default=True, help="Training: states moved to CPU memory.")
@click.option("--lora-rank", type=click.IntRange(min=1), default=None, help="Training: LoRA adapters of this rank on a frozen base.")
@click.option("--qlora", is_flag=True, help="Training: QLoRA (nf4 base, rank-16 adapters unless --lora-rank).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Also write the plan (YAML, or JSON for *.json) here, atomically.")
@FORMAT_OPTION
@_handle_errors
def deploy(**opts: Any) -> None:
    """Choose devices and a split (replicas, pipeline stages, tensor parallelism) and predict speed."""
    from planner.commands.deploy import run_deploy

    data, text, code = run_deploy(opts)
    _emit(data, opts["fmt"], text)
    if opts["output"]:
        import yaml

        body = json.dumps(data, indent=2) + "\n" if opts["output"].endswith(".json") else yaml.safe_dump(data, sort_keys=False, width=120)
        _write_atomically(opts["output"], body)
    if code:
        sys.exit(code)


# ----------------------------------------------------------------------------- plan models
@main.group()
def models() -> None:
    """The built-in model catalog."""


@models.command("list")
@click.option("--family", default=None, help="Only this family (llama3.1, qwen3, ...).")
@FORMAT_OPTION
@_handle_errors
def models_list(family: str | None, fmt: str) -> None:
    """List catalog models with exact parameter counts."""
    from planner.commands.models import run_models_list

    data, text = run_models_list(family)
    _emit(data, fmt, text)


@models.command("show")
@click.argument("name")
@FORMAT_OPTION
@_handle_errors
def models_show(name: str, fmt: str) -> None:
    """Show one model: architecture, source and per-component parameters."""
    from planner.commands.models import run_models_show

    data, text = run_models_show(name)
    _emit(data, fmt, text)


# ----------------------------------------------------------------------------- plan formats
@main.command("formats")
@FORMAT_OPTION
@_handle_errors
def formats(fmt: str) -> None:
    """List weight and KV-cache formats with their exact bits per weight."""
    from planner.commands.formats import run_formats

    data, text = run_formats()
    _emit(data, fmt, text)



# ----------------------------------------------------------------------------- plan hardware
@main.group()
def hardware() -> None:
    """The built-in hardware catalog."""


@hardware.command("list")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE|TEXT",
              help="vendor=nvidia, kind=apple-silicon, min_memory_gib=48, tensor_cores=true, or a substring of the id or name. Repeatable.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_handle_errors
def hardware_list(filters: tuple[str, ...], fmt: str) -> None:
    """List catalog devices with memory, bandwidth, compute, power and price."""
    from planner.commands.hardware import run_hardware_list

    data, text = run_hardware_list(filters)
    _emit(data, fmt, text)


@hardware.command("show")
@click.argument("device_id", metavar="ID")
@FORMAT_OPTION
@_handle_errors
def hardware_show(device_id: str, fmt: str) -> None:
    """Show every field of one catalog device."""
    from planner.commands.hardware import run_hardware_show

    data, text = run_hardware_show(device_id)
    _emit(data, fmt, text)


# ----------------------------------------------------------------------------- plan inventory
@main.group()
def inventory() -> None:
    """Inventory files: what you own or might buy."""


@inventory.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@_handle_errors
def inventory_validate(file: str) -> None:
    """Check an inventory file; exit 0 when valid, 2 with the line and field when not."""
    from planner.commands.inventory import run_inventory_validate

    click.echo(run_inventory_validate(file))


@inventory.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@FORMAT_OPTION
@_handle_errors
def inventory_show(file: str, fmt: str) -> None:
    """Devices, total and usable memory, bandwidth, links and fast domains."""
    from planner.commands.inventory import run_inventory_show

    data, text = run_inventory_show(file)
    _emit(data, fmt, text)


@inventory.command("detect")
@click.option("--from-file", type=click.Path(dir_okay=False), help="Saved output of nvidia-smi (CSV or -q -x XML) or system_profiler -json.")
@click.option("--source-format", type=click.Choice(["nvidia-smi-csv", "nvidia-smi-xml", "system-profiler"]), default=None,
              help="What --from-file holds [default: recognised from its content].")
@click.option("--node-name", default=None, help="Name of this machine in the inventory [default: the host name].")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the inventory here (atomically) instead of printing it.")
@_handle_errors
def inventory_detect(from_file: str | None, source_format: str | None, node_name: str | None, output: str | None) -> None:
    """Write an inventory for this machine from nvidia-smi or system_profiler."""
    import yaml

    from planner.commands.inventory import run_inventory_detect

    data = run_inventory_detect(from_file, source_format, node_name)
    text = yaml.safe_dump(data, sort_keys=False)
    if output:
        _write_atomically(output, text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text.rstrip())


# ----------------------------------------------------------------------------- plan schema
@main.group()
def schema() -> None:
    """JSON Schemas of the files the planner reads and writes."""


@schema.command("plan")
@_handle_errors
def schema_plan() -> None:
    """The JSON Schema of plan files (`plan deploy --format json` / `-o`)."""
    from planner.schemas.plan import PlanOut

    schema = PlanOut.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "planner plan"
    click.echo(json.dumps(schema, indent=2))


@schema.command("inventory")
@_handle_errors
def schema_inventory() -> None:
    """The JSON Schema of inventory files (for editors)."""
    from planner.commands.inventory import run_schema_inventory

    click.echo(json.dumps(run_schema_inventory(), indent=2))


def _write_atomically(path: str, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it into place."""
    import os
    import tempfile
    from pathlib import Path

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", file=path) from None


if __name__ == "__main__":
    main()
