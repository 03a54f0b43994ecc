"""Every command-line option, declared once: the same name, type, default and meaning in every
command that takes it. Numbers are bounded (planner/limits.py) and floats must be finite."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from planner.limits import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_TIME_LIMIT_S, MAX_USERS
from planner.schemas.objectives import OBJECTIVES
from planner.schemas.workload import OPTIMIZERS


class FiniteFloat(click.ParamType):
    """A finite number within bounds (NaN and infinities are refused)."""

    name = "number"

    def __init__(self, low: float, high: float, *, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"expected a number, got {str(value)[:40]!r}", param, ctx)
        if math.isnan(number):
            self.fail("NaN is not a number", param, ctx)
        if math.isinf(number):
            self.fail(f"expected a finite number, got {value}", param, ctx)
        too_low = number <= self.low if self.low_open else number < self.low
        if too_low or number > self.high:
            bracket = "(" if self.low_open else "["
            self.fail(f"{number:g} is outside {bracket}{self.low:g}, {self.high:g}]", param, ctx)
        return number


def _int(low: int, high: int) -> click.IntRange:
    return click.IntRange(low, high)


ZERO_CHOICES = ("auto", "0", "1", "2", "3")
FORMATS = ("table", "json", "yaml")
EXPORT_TARGETS = ["vllm", "sglang", "llama.cpp", "exo", "mlx-lm", "deepspeed", "megatron", "kubernetes"]

# name -> click.option(...). The parameter name is the field of the command's typed arguments.
OPTIONS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    # what to plan
    "model": click.option("--model", "model", metavar="NAME|PATH",
                          help="Catalog name, HF repo id, config.json, a model folder, a .safetensors or .gguf file."),
    "params": click.option("--params", metavar="SIZE", help="A bare parameter count (70B, 7.5e9) for the seed's quick estimate."),
    "inventory": click.option("--inventory", default=None, metavar="FILE",
                              help="Inventory YAML (see inventories/); or describe the machines with --gpus or --nodes."),
    "gpus": click.option("--gpus", default=None, metavar="DEVICES",
                         help="One machine without an inventory file: 2xrtx-3090,rtx-4090 (docs/inventory.md)."),
    "nodes": click.option("--nodes", default=None, metavar="MACHINES",
                          help="Machines without an inventory file: 2x(8xh100-sxm)+(4xl40s), named n1, n2, ..."),
    "interconnect": click.option("--interconnect", default=None, metavar="LINK",
                                 help="With --gpus/--nodes: the link inside each machine [default: nvswitch for SXM parts, "
                                      "unified for a Mac, else PCIe]."),
    "network": click.option("--network", default=None, metavar="LINK",
                            help="With --nodes: the link between machines [default: infiniband-ndr between NVSwitch "
                                 "machines, else ethernet-10g]."),
    # engine
    "engine": click.option("--engine", metavar="NAME", default=None,
                           help="Serving: vllm, sglang, llama.cpp, exo, mlx-lm; training: deepspeed, megatron; "
                                "vllm@0.10.2 also names the version [default: chosen from the inventory and precision, "
                                "docs/engines.md]."),
    # precision
    "weights": click.option("--weights", metavar="FMT",
                            help="Weight format (bf16, fp8, int8, int4, nf4, mxfp4, q4_k_m...) [default: the checkpoint's]."),
    "kv_cache": click.option("--kv-cache", "kv_cache", metavar="FMT",
                             help="KV-cache dtype (fp16, bf16, fp8, int8, int4, q8_0, q4_0; auto: the model's dtype) [default: auto]."),
    "embedding": click.option("--embedding", metavar="FMT", help="Format override for the token embedding."),
    "lm_head": click.option("--lm-head", "lm_head", metavar="FMT", help="Format override for the output head."),
    "attention": click.option("--attention", metavar="FMT", help="Format override for attention projections."),
    "dense_mlp": click.option("--dense-mlp", "dense_mlp", metavar="FMT", help="Format override for dense MLPs."),
    "experts": click.option("--experts", metavar="FMT", help="Format override for routed experts."),
    "shared_experts": click.option("--shared-experts", "shared_experts", metavar="FMT", help="Format override for shared experts."),
    # serving workload
    "users": click.option("--users", type=_int(1, MAX_USERS), default=1, show_default=True, help="Concurrent users (sequences)."),
    "context": click.option("--context", type=_int(1, MAX_CONTEXT_TOKENS), default=None,
                            help="Tokens per user [default: 4096, capped at the model's maximum]."),
    "prompt_tokens": click.option("--prompt-tokens", "prompt_tokens", type=_int(1, MAX_CONTEXT_TOKENS), default=None,
                                  help="Tokens in each request's prompt [default: half the context, or the context less --output-tokens]."),
    "output_tokens": click.option("--output-tokens", "output_tokens", type=_int(1, MAX_CONTEXT_TOKENS), default=None,
                                  help="Tokens each request generates [default: the context less the prompt]."),
    "request_rate": click.option("--request-rate", "request_rate", type=FiniteFloat(0, 1e7, low_open=True), default=None,
                                 help="Requests per second to sustain, instead of --users: the plan serves the concurrency "
                                      "that rate takes (Little's law)."),
    "max_ttft": click.option("--max-ttft", "max_ttft", type=FiniteFloat(0, 1e6, low_open=True), default=None, metavar="SECONDS",
                             help="Every request sees its first token within this many seconds, queueing included."),
    "prefill_chunk": click.option("--prefill-chunk", "--max-num-batched-tokens", "prefill_chunk", type=_int(1, MAX_BATCH),
                                  default=None, help="Tokens per forward pass: vLLM max_num_batched_tokens, SGLang "
                                                     "chunked_prefill_size, llama.cpp ubatch [default: the engine's on each device]."),
    "max_sequences": click.option("--max-num-seqs", "max_sequences", type=_int(1, MAX_USERS), default=None,
                                  help="The engine's concurrency cap: vLLM max_num_seqs, SGLang max_running_requests, llama.cpp "
                                       "slots [default: the engine's, raised to the users a replica serves]."),
    "block_size": click.option("--block-size", "block_size", type=_int(1, 65536), default=None,
                               help="KV-cache block in tokens (vLLM --block-size) [default: the engine's]."),
    "kv_cache_memory_bytes": click.option("--kv-cache-memory-bytes", "kv_cache_memory_bytes", type=_int(1, 2**50), default=None,
                                          help="An explicit KV-cache budget per device in bytes (vLLM), instead of "
                                               "--gpu-memory-utilization."),
    "enforce_eager": click.option("--enforce-eager", "enforce_eager", is_flag=True,
                                  help="No CUDA graphs (vLLM): their memory is not counted."),
    "engine_version": click.option("--engine-version", "engine_version", metavar="VERSION", default=None,
                                   help="The engine version whose memory rules to apply (vLLM 0.8-0.33) [default: the "
                                        "profile's, docs/engines.md]."),
    "min_tokens_per_s": click.option("--min-tokens-per-s", "min_tokens_per_s", type=FiniteFloat(0, 1e9, low_open=True),
                                     default=None, help="Every user must decode at least this fast, under load (tokens/s)."),
    "objective": click.option("--objective", type=click.Choice(list(OBJECTIVES)), default="throughput", show_default=True,
                              help="What to optimise once everything fits (docs/solver.md)."),
    "gpu_memory_utilization": click.option("--gpu-memory-utilization", "--mem-fraction-static", "gpu_memory_utilization",
                                           type=FiniteFloat(0, 1, low_open=True), default=None,
                                           help="Share of GPU memory the engine takes: vLLM gpu_memory_utilization, SGLang "
                                                "mem_fraction_static [default: the engine's: vLLM 0.92, SGLang by GPU memory]."),
    # memory accounting
    "overhead": click.option("--overhead", type=FiniteFloat(0, 1), default=None,
                             help="The seed's overhead factor O on weights [default: 0 with --model, whose engine overheads "
                                  "are counted exactly; the seed's 0.1 with --params]."),
    "runtime_reserve_gib": click.option("--runtime-reserve-gib", "runtime_reserve_gib", type=FiniteFloat(0, 1e6), default=None,
                                        help="Per-device memory outside the engine's own accounting, GiB (vLLM: in place "
                                             "of its non-torch estimate) [default: the engine's; 0.35 without --engine]."),
    "time_limit": click.option("--time-limit", "time_limit", type=FiniteFloat(0.1, MAX_TIME_LIMIT_S), default=60.0,
                               show_default=True, help="Wall-clock limit for the whole run (candidates, solver, explanations), s."),
    # training
    "mode": click.option("--mode", type=click.Choice(["serve", "train"]), default="serve", show_default=True),
    "global_batch_size": click.option("--global-batch-size", "global_batch_size", type=_int(1, MAX_BATCH), default=64,
                                      show_default=True, help="Training: sequences per optimizer step."),
    "micro_batch_size": click.option("--micro-batch-size", "micro_batch_size", type=_int(1, MAX_BATCH), default=1,
                                     show_default=True, help="Training: sequences per device per micro-step."),
    "sequence_length": click.option("--sequence-length", "sequence_length", type=_int(1, MAX_CONTEXT_TOKENS), default=None,
                                    help="Training: tokens per sequence [default: --context or 4096]."),
    "optimizer": click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), default="adamw", show_default=True,
                              help="Training: optimizer whose states are kept."),
    "zero_stage": click.option("--zero-stage", "zero_stage", type=click.Choice(list(ZERO_CHOICES)), default="auto",
                               show_default=True, help="Training: ZeRO stage; auto lets `plan deploy` choose (stage 0 in `plan memory`)."),
    "offload": click.option("--offload", type=click.Choice(["auto", "none", "optimizer", "optimizer+params"]), default="auto",
                            show_default=True, help="Training: states kept in CPU memory; auto lets `plan deploy` choose (none in `plan memory`)."),
    "recompute": click.option("--recompute", type=click.Choice(["auto", "none", "selective", "full"]), default="auto",
                              show_default=True, help="Training: activation recomputation; auto lets `plan deploy` choose (none in `plan memory`)."),
    "lora_rank": click.option("--lora-rank", "lora_rank", type=_int(1, 65536), default=None,
                              help="Training: LoRA adapters of this rank on a frozen base."),
    "qlora": click.option("--qlora", is_flag=True, help="Training: QLoRA (nf4 base, rank-16 adapters unless --lora-rank)."),
    "fp32_training": click.option("--fp32-training", "fp32_training", is_flag=True, help="Training: fp32 instead of mixed precision."),
    "sequence_parallel": click.option("--sequence-parallel", "sequence_parallel", is_flag=True,
                                      help="Training: Megatron sequence parallelism (`plan deploy` turns it on with tensor parallelism)."),
    "estimator": click.option("--estimator", type=click.Choice(["planner", "deepspeed"]), default="planner", show_default=True,
                              help="Training: also show DeepSpeed's own model-state estimate."),
    "largest_layer_params": click.option("--largest-layer-params", "largest_layer_params", metavar="SIZE",
                                         help="Largest layer's parameters for DeepSpeed's ZeRO-3 estimate."),
    # a fixed layout
    "tensor_parallel_size": click.option("--tensor-parallel-size", "-tp", "tensor_parallel_size", type=_int(1, 4096),
                                         default=None, help="Devices sharing each stage's layers [default: 1 in `plan memory`; "
                                                            "chosen by `plan deploy`, which this pins]."),
    "pipeline_parallel_size": click.option("--pipeline-parallel-size", "-pp", "pipeline_parallel_size", type=_int(1, 4096),
                                           default=None, help="Pipeline stages [default: 1 in `plan memory`; chosen by "
                                                              "`plan deploy`, which this pins]."),
    "data_parallel_size": click.option("--data-parallel-size", "-dp", "data_parallel_size", type=_int(1, 65536), default=None,
                                       help="Replicas (serving) or data-parallel ranks (training) [default: 1 in `plan memory`; "
                                            "chosen by `plan deploy`, which this pins]."),
    "layer_split": click.option("--layer-split", "layer_split", metavar="N,N,...", default=None,
                                help="Layers per pipeline stage, in order (vLLM's VLLM_PP_LAYER_PARTITION) [default: "
                                     "vLLM's even split in `plan memory`; chosen by `plan deploy`, which this pins]."),
    "n_cpu_moe": click.option("--n-cpu-moe", "n_cpu_moe", type=_int(0, 4096), default=None,
                              help="llama.cpp: keep the routed experts of the first N layers in host memory [default: "
                                   "the least offload that fits, when the GPUs cannot hold the model]."),
    "cpu_layers": click.option("--cpu-layers", "cpu_layers", type=_int(0, 4096), default=None,
                               help="llama.cpp: run the first N layers (and the output layer) on the CPU, -ngl = the "
                                    "rest [default: the least offload that fits]."),
    # output
    "add": click.option("--add", "add", multiple=True, metavar="DEVICES[@NODE]",
                        help="Devices to add (2xrtx-3090, h100-sxm@hgx-1): into machine NODE, or a new machine on the network."),
    "remove": click.option("--remove", "remove", multiple=True, metavar="NODE", help="A machine to take away."),
    "replace": click.option("--replace", "replace", multiple=True, metavar="NODE=DEVICES",
                            help="A machine's devices replaced (gpu-box=2xrtx-4090)."),
    # buying from scratch (plan whatif without machines)
    "market": click.option("--market", default=None, metavar="FILE",
                           help="Your own market: a YAML list of machine templates with prices [default: the built-in market]."),
    "templates": click.option("--template", "templates", multiple=True, metavar="ID[,ID]",
                              help="Only these templates (ids or patterns: hgx-*, m3-ultra-*, 4x-l40s)."),
    "cost": click.option("--cost", type=click.Choice(["purchase", "hourly", "tco"]), default="purchase", show_default=True,
                         help="Compare purchase price, cloud rent per hour, or total cost of ownership over --years."),
    "years": click.option("--years", type=FiniteFloat(0, 30, low_open=True), default=3.0, show_default=True,
                          help="Years of total cost of ownership (--cost tco)."),
    "usd_per_kwh": click.option("--usd-per-kwh", "usd_per_kwh", type=FiniteFloat(0, 10, low_open=True), default=None,
                                help="Electricity price, USD per kWh (--cost tco)."),
    "utilization": click.option("--utilization", type=FiniteFloat(0, 1, low_open=True), default=1.0, show_default=True,
                                help="Share of rated power drawn on average (--cost tco)."),
    "max_machines": click.option("--max-machines", "max_machines", type=_int(1, 64), default=16, show_default=True,
                                 help="The most machines of one template a purchase may take."),
    "list_templates": click.option("--list-templates", "list_templates", is_flag=True, default=False,
                                   help="List the market's templates and their prices, then stop."),
    # a sweep's axes (plan sweep): comma lists, checked by the command's typed arguments
    "users_list": click.option("--users", "users_list", required=True, metavar="N,N,...",
                               help="Concurrent users of each row of the grid (1,8,32,64)."),
    "contexts": click.option("--context", "contexts", required=True, metavar="N,N,...",
                             help="Tokens per user of each column of the grid (4096,32768)."),
    "weights_list": click.option("--weights", "weights_list", metavar="FMT,FMT,...", default=None,
                                 help="Weight formats to sweep as well (q4_k_m,q8_0,bf16) [default: the checkpoint's]."),
    "engines": click.option("--engine", "engines", metavar="NAME,NAME,...", default=None,
                            help="Engines to sweep as well (vllm,sglang; vllm@0.10.2 names the version) [default: chosen "
                                 "from the inventory and precision]."),
    "sweep_fmt": click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "yaml"]), default="table",
                              show_default=True, help="Output format: a grid, one CSV line per cell, or the data."),
    "fmt": click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="table", show_default=True,
                        help="Output format."),
    "output": click.option("-o", "--output", "output", metavar="FILE", default=None,
                           help="Also write the plan (YAML, or JSON for *.json) here, replacing it in one step."),
    "report": click.option("--report", "report", metavar="FILE.html", default=None,
                           help="Also write a self-contained HTML page: the plan, its pictures and the answer's tables."),
    "pictures": click.option("--pictures", "pictures", metavar="DIR", default=None,
                             help="Also draw the answer's pictures (memory, topology, Pareto front, sweep) as SVG and PNG in DIR "
                                  "(needs planner[pictures])."),
    # export
    "to": click.option("--to", "target", required=True, type=click.Choice(EXPORT_TARGETS), metavar="TARGET",
                       help=f"Launch files for: {', '.join(EXPORT_TARGETS)} (the plan's engine, or kubernetes for vLLM and SGLang)."),
    "export": click.option("--export", "export_to", type=click.Choice(EXPORT_TARGETS), default=None, metavar="TARGET",
                           help="Also write the plan's launch files for this target into --out."),
    "out": click.option("--out", "out", metavar="DIR", default=None,
                        help="Folder for the launch files: new, empty, or an earlier export, which is replaced in one step "
                             "[plan export default: export-TARGET]."),
    "model_path": click.option("--model-path", "model_path", metavar="PATH|REPO", default=None,
                               help="What the launches load: a local path (the same on every machine) or a repository id "
                                    "[default: the model's Hugging Face id, or the file the plan read]."),
    "addresses": click.option("--inventory", "inventory", metavar="FILE", default=None,
                              help="Take machine addresses, ports and custom devices from this inventory as it is now."),
}

PRECISION = ("weights", "kv_cache", "embedding", "lm_head", "attention", "dense_mlp", "experts", "shared_experts")
TRAINING = ("mode", "optimizer", "zero_stage", "offload", "recompute", "micro_batch_size", "sequence_length", "lora_rank",
            "qlora", "fp32_training")


def use(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Apply the named options to a command, in the order given (as --help lists them)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            func = OPTIONS[name](func)
        return func

    return decorate


def option_names(command: click.Command) -> dict[str, str]:
    """Parameter name -> the option as typed (--kv-cache), for error messages."""
    return {p.name: max(p.opts, key=len) for p in command.params if p.name and isinstance(p, click.Option)}


def given(ctx: click.Context) -> frozenset[str]:
    """The options the user gave on the command line (not defaults)."""
    return frozenset(name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE)
