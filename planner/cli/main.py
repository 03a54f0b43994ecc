"""The `plan` command line. The only module that prints, writes files and chooses exit codes:
0 a plan (or a report), 1 no feasible plan, 2 bad input (one line naming the file, line and
field), 130 interrupted. Nothing is written by an interrupted or failed run."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click
from pydantic import BaseModel, ValidationError

from planner.cli.options import given, option_names, use
from planner.errors import PlannerError

EXIT_OK, EXIT_INFEASIBLE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _OutputError(Exception):
    """Standard output could not be written."""


def _render(data: Any, fmt: str, text: Callable[[Any], str]) -> str:
    if fmt == "table":
        return text(data)
    try:
        body = json.dumps(data, indent=2, allow_nan=False)
    except ValueError as exc:  # a non-finite number would be a bug, never valid JSON
        raise PlannerError(f"internal error: the output holds a number that is not finite ({exc})") from None
    if fmt == "json":
        return body
    import yaml

    return yaml.safe_dump(data, sort_keys=False, width=120).rstrip()


def _echo(text: str, *, err: bool = False) -> None:
    try:
        click.echo(text, err=err)
    except OSError as exc:
        raise _OutputError(exc) from None


def _emit(data: Any, fmt: str, text: Callable[[Any], str]) -> None:
    _echo(_render(data, fmt, text))


def _progress() -> Callable[[str], None] | None:
    """A writer of progress lines on stderr when it is a terminal; None (quiet) otherwise."""
    if not sys.stderr.isatty():
        return None
    return lambda text: click.echo(f"... {text}", err=True)


def _check_answer_files(args: Any) -> None:
    """A bad --report or --pictures fails before the run, not after it."""
    from planner.loaders.files import check_path_length, check_writable

    if getattr(args, "report", None):
        check_writable(args.report)
    if getattr(args, "pictures", None):
        from planner.errors import InputError
        from planner.report.pictures import INSTALL_HINT, pictures_available

        check_path_length(args.pictures, field="--pictures")
        if os.path.exists(args.pictures) and not os.path.isdir(args.pictures):
            raise InputError(f"{args.pictures} is a file, not a folder for the pictures", field="--pictures")
        if not pictures_available():
            raise InputError(INSTALL_HINT, field="--pictures")


def _write_answer_files(args: Any, kind: str, data: dict[str, Any], plan: dict[str, Any] | None,
                        inventory: dict[str, Any] | None = None, plan_label: str | None = None) -> None:
    """--pictures DIR (SVG and PNG of each picture) and --report FILE.html, for an answer."""
    from pathlib import Path

    from planner.commands.report import (
        PICTURE_FORMATS,
        build_answer_pictures,
        to_answer_report,
    )
    from planner.loaders.files import write_bytes, write_text

    if getattr(args, "pictures", None):
        folder = Path(args.pictures)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PlannerError(f"{args.pictures}: cannot make the folder: {exc.strerror or exc}") from None
        written = []
        for fmt in PICTURE_FORMATS:
            for name, picture in build_answer_pictures(kind, data, plan=plan, inventory=inventory, fmt=fmt).items():
                write_bytes(folder / f"{name}.{fmt}", picture)
                written.append(f"{name}.{fmt}")
        _echo(f"wrote {len(written)} pictures to {args.pictures}: {', '.join(written)}", err=True)
    if getattr(args, "report", None):
        if plan is None:
            _echo("no plan, so no report", err=True)
            return
        write_text(args.report, to_answer_report(kind, data, plan=plan, inventory=inventory, plan_label=plan_label))
        _echo(f"wrote the report to {args.report}", err=True)


def _build_args(schema: type[BaseModel], ctx: click.Context, **params: Any) -> Any:
    """The command's typed arguments from its options; a rule broken names the option."""
    values = dict(params)
    if values.get("zero_stage") not in (None, "auto"):
        values["zero_stage"] = int(values["zero_stage"])
    try:
        return schema(**values, explicit=given(ctx))
    except ValidationError as exc:
        from planner.loaders.validation import to_input_error

        raise to_input_error(exc, options=option_names(ctx.command)) from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so temporary files are removed on the way out."""
    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class PlannerGroup(click.Group):
    """Maps every failure to a one-line message and an exit code; never a traceback."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        code = EXIT_OK
        try:
            with _terminate_as_exit():
                result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else EXIT_OK
            sys.stdout.flush()
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            code = exc.exit_code if exc.exit_code != 1 else EXIT_BAD_INPUT
        except PlannerError as exc:
            click.echo(f"error: {exc}", err=True)
            code = exc.exit_code
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.echo("error: interrupted; nothing was written", err=True)
            code = EXIT_INTERRUPTED
        except (_OutputError, OSError) as exc:
            reason = exc.args[0] if isinstance(exc, _OutputError) else exc
            if getattr(reason, "errno", None) == errno.EPIPE:
                code = EXIT_INFEASIBLE  # the reader went away (`| head`); Python's convention is 1
            else:
                click.echo(f"error: cannot write the output: {getattr(reason, 'strerror', None) or reason}", err=True)
                code = EXIT_BAD_INPUT
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=PlannerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="planner")
def main() -> None:
    """Will this LLM fit on these machines, how should it be split, and how fast will it run?"""


# ----------------------------------------------------------------------------- plan memory
@main.command()
@use("model", "params", "engine", "engine_version", "weights", "kv_cache", "embedding", "lm_head", "attention", "dense_mlp",
     "experts", "shared_experts", "users", "context", "prefill_chunk", "max_sequences", "block_size", "enforce_eager", "overhead", "runtime_reserve_gib", "mode", "optimizer", "zero_stage", "offload",
     "recompute", "micro_batch_size", "sequence_length", "sequence_parallel", "lora_rank", "qlora", "fp32_training",
     "estimator", "largest_layer_params", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size",
     "layer_split", "fmt")
@click.pass_context
def memory(ctx: click.Context, **params: Any) -> None:
    """Memory per device to serve or train a model."""
    from planner.commands.args import MemoryArgs
    from planner.commands.memory import run_memory

    args = _build_args(MemoryArgs, ctx, **params)
    report, text = run_memory(args)
    _emit(report, args.fmt, text)


# ----------------------------------------------------------------------------- plan deploy
@main.command()
@use("inventory", "gpus", "nodes", "interconnect", "network", "model", "engine", "engine_version", "weights", "kv_cache",
     "embedding", "lm_head", "attention", "dense_mlp", "experts", "shared_experts", "users", "request_rate", "context", "prompt_tokens", "output_tokens", "prefill_chunk",
     "max_sequences", "min_tokens_per_s", "max_ttft", "objective", "gpu_memory_utilization", "kv_cache_memory_bytes", "block_size", "enforce_eager", "overhead", "runtime_reserve_gib", "time_limit", "mode", "global_batch_size", "micro_batch_size", "sequence_length",
     "optimizer", "recompute", "zero_stage", "offload", "lora_rank", "qlora", "fp32_training", "tensor_parallel_size",
     "pipeline_parallel_size", "data_parallel_size", "layer_split", "n_cpu_moe", "cpu_layers", "output", "report", "pictures",
     "export", "out", "model_path", "fmt")
@click.pass_context
def deploy(ctx: click.Context, **params: Any) -> int:
    """Choose devices and a split (replicas, pipeline stages, tensor parallelism) and predict speed."""
    from planner.commands.args import DeployArgs
    from planner.commands.deploy import run_deploy

    args = _build_args(DeployArgs, ctx, **params)
    if args.output:
        from planner.loaders.files import check_writable

        check_writable(args.output)  # a bad -o fails before the run, not after it
    _check_answer_files(args)
    if args.export_to:
        from planner.loaders.files import check_bundle_folder

        if not args.out:
            raise click.UsageError("--export needs --out DIR")
        check_bundle_folder(args.out)
    result = run_deploy(args, progress=_progress())
    data = result.data
    _emit(data, args.fmt, result.text)
    if args.fmt == "table":
        t = result.timings
        _echo(f"planned in {t['total_s']:.2f} s (candidates {t['candidates_s']:.2f} s, solver {t['solver_s']:.2f} s, "
              f"checks {t['verify_and_explain_s']:.2f} s)", err=True)
    if args.output:
        from planner.loaders.files import write_text

        write_text(args.output, _render(data, "json" if args.output.endswith(".json") else "yaml", result.text) + "\n")
    if args.report or args.pictures:
        from planner.commands.deploy import load_cluster
        from planner.report.inventory import to_inventory_dict

        _write_answer_files(args, "deploy", data, data, to_inventory_dict(load_cluster(args)))
    if args.export_to and result.exit_code == 0:
        from planner.commands.saved import export_plan
        from planner.loaders.files import write_bundle

        bundle = export_plan(result.plan, args.export_to, model_path=args.model_path)
        write_bundle(args.out, bundle.files)
        _echo(f"wrote {len(bundle.files)} files for {args.export_to} to {args.out} (start with {args.out}/README.md)", err=True)
    elif args.export_to:
        _echo("no plan, so nothing exported", err=True)
    return result.exit_code


# ----------------------------------------------------------------------------- plan whatif
@main.command()
@use("inventory", "gpus", "nodes", "interconnect", "network", "add", "remove", "replace", "market", "templates", "cost",
     "years", "usd_per_kwh", "utilization", "max_machines", "list_templates", "model", "engine",
     "engine_version", "weights", "kv_cache", "users", "request_rate", "context", "prompt_tokens", "output_tokens",
     "min_tokens_per_s", "max_ttft", "objective", "time_limit", "output", "report", "pictures", "fmt")
@click.pass_context
def whatif(ctx: click.Context, **params: Any) -> int:
    """The same request on the machines as they are and after changes (--add, --remove, --replace),
    or for several weight formats (--weights q4_k_m,q8_0,bf16): fits, speed, capacity, cost.

    Without --inventory, --gpus or --nodes: the cheapest machines to buy or rent from a market of
    templates (--market, --template, --cost purchase|hourly|tco) that meet --users or
    --request-rate at --min-tokens-per-s and --max-ttft, each a verified plan."""
    from planner.commands.whatif import WhatifArgs, run_whatif, to_whatif_text

    if params.get("list_templates"):
        from planner.commands.market import list_templates, to_templates_text

        data = list_templates(params.get("market"), params.get("templates") or ())
        _emit(data, params.get("fmt") or "table", to_templates_text)
        return 0
    args = _build_args(WhatifArgs, ctx, **params)
    if args.output:
        from planner.loaders.files import check_writable

        check_writable(args.output)
    _check_answer_files(args)
    inventory = None
    if args.buying:
        from planner.commands.buy import run_buy, to_buy_text

        data, code = run_buy(args, progress=_progress())
        text, kind = to_buy_text, "buy"
        best = next((r for r in data["configurations"] if r["verified"]), None)
        plan = best["plan"] if best else None
        label = f"the cheapest verified answer: {best['configuration']} ({best['weights']})" if best else None
        if best is not None and (args.report or args.pictures):
            from planner.commands.buy import build_answer_cluster
            from planner.report.inventory import to_inventory_dict

            inventory = to_inventory_dict(build_answer_cluster(best))
    else:
        plans: list[dict[str, Any]] = []
        data, code = run_whatif(args, plans=plans, progress=_progress())
        text, kind = to_whatif_text, "whatif"
        fitting = [(p, r) for p, r in zip(plans, data["scenarios"]) if r["fits"]]
        plan, row = fitting[-1] if fitting else ((plans[-1], data["scenarios"][-1]) if plans else (None, None))
        label = f"scenario '{row['scenario']}', weights {row['weights']}" if row else None
    _emit(data, args.fmt, text)
    if args.report or args.pictures:
        _write_answer_files(args, kind, data, plan, inventory if kind == "buy" and plan is not None else None, plan_label=label)
    if args.output:
        from planner.loaders.files import write_text

        write_text(args.output, _render(data, "json" if args.output.endswith(".json") else "yaml", text) + "\n")
    return code


# ----------------------------------------------------------------------------- plan sweep
@main.command()
@use("inventory", "gpus", "nodes", "interconnect", "network", "model", "engines", "engine_version", "weights_list",
     "kv_cache", "users_list", "contexts", "prompt_tokens", "output_tokens", "min_tokens_per_s", "max_ttft", "objective",
     "time_limit", "report", "pictures", "sweep_fmt")
@click.pass_context
def sweep(ctx: click.Context, **params: Any) -> int:
    """A grid of users x context (and --weights, --engine lists) on one set of machines: fits, per-user
    and total speed, capacity, and the largest user count for each context."""
    from planner.commands.sweep import SweepArgs, run_sweep, to_sweep_csv, to_sweep_text

    args = _build_args(SweepArgs, ctx, **params)
    _check_answer_files(args)
    data = run_sweep(args, progress=_progress())
    if args.fmt == "csv":
        _echo(to_sweep_csv(data))
    else:
        _emit(data, args.fmt, to_sweep_text)
    if args.report or args.pictures:
        from planner.commands.sweep import plan_largest_cell
        from planner.report.inventory import to_inventory_dict

        plan, cluster = plan_largest_cell(args, data)
        _write_answer_files(args, "sweep", data, plan, to_inventory_dict(cluster))
    return EXIT_OK if any(r["fits"] for r in data["rows"]) else EXIT_INFEASIBLE


# ----------------------------------------------------------------------------- plan export
@main.command("export")
@click.argument("plan_file", metavar="PLAN")
@use("to", "out", "model_path", "addresses")
def export(plan_file: str, target: str, out: str | None, model_path: str | None, inventory: str | None) -> None:
    """Write a saved plan's launch files (commands, configs, run-book) for its engine."""
    from planner.commands.saved import run_export
    from planner.loaders.files import check_bundle_folder, write_bundle

    out = out or f"export-{target}"
    check_bundle_folder(out)
    bundle = run_export(plan_file, target, model_path=model_path, inventory=inventory)
    write_bundle(out, bundle.files)
    _echo(f"wrote {len(bundle.files)} files for {target} to {out}:")
    for name in bundle.files:
        _echo(f"  {out}/{name}")


# ----------------------------------------------------------------------------- plan check
@main.command("check")
@click.argument("plan_file", metavar="PLAN")
@click.option("--inventory", required=True, metavar="FILE", help="The inventory as it is now.")
@use("fmt")
def check(plan_file: str, inventory: str, fmt: str) -> int:
    """Re-verify a saved plan against the inventory as it is now: exit 0 when it holds, 1 with each violation."""
    from planner.commands.saved import run_check

    result = run_check(plan_file, inventory)

    def text(data: dict) -> str:
        head = f"{data['plan']} holds on {data['inventory']}." if data["holds"] else \
            f"{data['plan']} does not hold on {data['inventory']}: {len(data['violations'])} violation(s)"
        return "\n".join([head, *[f"  - {v}" for v in data["violations"]], *[f"  note: {n}" for n in data["notes"]]])

    _emit(result.to_dict(), fmt, text)
    return result.exit_code


# ----------------------------------------------------------------------------- plan diff
@main.command("diff")
@click.argument("plan_a", metavar="A")
@click.argument("plan_b", metavar="B")
@use("fmt")
def diff(plan_a: str, plan_b: str, fmt: str) -> int:
    """What changed between two saved plans: exit 0 when they agree, 1 when they differ."""
    from planner.loaders.plan import load_plan
    from planner.report.diff import build_plan_diff

    changes = build_plan_diff(load_plan(plan_a), load_plan(plan_b))
    data = {"a": plan_a, "b": plan_b, "same": not changes, "changes": changes}
    _emit(data, fmt, lambda d: f"{d['a']} and {d['b']} agree." if d["same"] else
          "\n".join([f"{d['a']} -> {d['b']}: {len(d['changes'])} change(s)", *[f"  {c}" for c in d["changes"]]]))
    return 1 if changes else 0


# ----------------------------------------------------------------------------- plan show
@main.command()
@click.argument("plan_file", metavar="PLAN")
@use("fmt")
def show(plan_file: str, fmt: str) -> None:
    """Read a saved plan (`plan deploy -o FILE`) and show it."""
    from planner.loaders.plan import load_plan
    from planner.report.plan import to_plan_dict, to_plan_text

    _emit(to_plan_dict(load_plan(plan_file)), fmt, to_plan_text)


# ----------------------------------------------------------------------------- plan models
@main.group()
def models() -> None:
    """The built-in model catalog."""


@models.command("list")
@click.option("--family", default=None, help="Only this family (llama3.1, qwen3, ...).")
@use("fmt")
def models_list(family: str | None, fmt: str) -> None:
    """List catalog models with exact parameter counts."""
    from planner.commands.models import run_models_list

    data, text = run_models_list(family)
    _emit(data, fmt, text)


@models.command("show")
@click.argument("name")
@use("fmt")
def models_show(name: str, fmt: str) -> None:
    """Show one model: architecture, source and per-component parameters."""
    from planner.commands.models import run_models_show

    data, text = run_models_show(name)
    _emit(data, fmt, text)


# ----------------------------------------------------------------------------- plan formats
@main.command("formats")
@use("fmt")
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
@use("fmt")
def hardware_list(filters: tuple[str, ...], fmt: str) -> None:
    """List catalog devices with memory, bandwidth, compute, power and price."""
    from planner.commands.hardware import run_hardware_list

    data, text = run_hardware_list(filters)
    _emit(data, fmt, text)


@hardware.command("show")
@click.argument("device_id", metavar="ID")
@use("fmt")
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
@click.argument("file")
def inventory_validate(file: str) -> None:
    """Check an inventory file; exit 0 when valid, 2 with the line and field when not."""
    from planner.commands.inventory import run_inventory_validate

    _echo(run_inventory_validate(file))


@inventory.command("show")
@click.argument("file")
@use("fmt")
def inventory_show(file: str, fmt: str) -> None:
    """Devices, total and usable memory, bandwidth, links and fast domains."""
    from planner.commands.inventory import run_inventory_show

    data, text = run_inventory_show(file)
    _emit(data, fmt, text)


@inventory.command("detect")
@click.option("--from-file", metavar="FILE", help="Saved output of nvidia-smi (CSV or -q -x XML) or system_profiler -json.")
@click.option("--source-format", type=click.Choice(["nvidia-smi-csv", "nvidia-smi-xml", "system-profiler"]), default=None,
              help="What --from-file holds [default: recognised from its content].")
@click.option("--node-name", default=None, help="Name of this machine in the inventory [default: the host name].")
@use("output")
def inventory_detect(from_file: str | None, source_format: str | None, node_name: str | None, output: str | None) -> None:
    """Write an inventory for this machine from nvidia-smi or system_profiler."""
    import yaml

    from planner.commands.inventory import run_inventory_detect
    from planner.loaders.files import check_writable

    if output:
        check_writable(output)
    data = run_inventory_detect(from_file, source_format, node_name)
    text = yaml.safe_dump(data, sort_keys=False)
    if output:
        from planner.loaders.files import write_text

        write_text(output, text)
        _echo(f"wrote {output}")
    else:
        _echo(text.rstrip())


# ----------------------------------------------------------------------------- plan schema
@main.group()
def schema() -> None:
    """JSON Schemas of the files the planner reads and writes."""


@schema.command("plan")
def schema_plan() -> None:
    """The JSON Schema of plan files (`plan deploy --format json` / `-o`)."""
    from planner.schemas.plan import build_plan_schema

    _echo(json.dumps(build_plan_schema(), indent=2))


@schema.command("inventory")
def schema_inventory() -> None:
    """The JSON Schema of inventory files (for editors)."""
    from planner.commands.inventory import run_schema_inventory

    _echo(json.dumps(run_schema_inventory(), indent=2))
