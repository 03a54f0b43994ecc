"""The typed parameters of each command, built once from the command-line options (declared once
in planner/cli/options.py). Cross-option rules live here, so every command checks them alike:
an option of the other mode is an error, not silently ignored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from planner.limits import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_TIME_LIMIT_S, MAX_USERS
from planner.schemas.objectives import Objective
from planner.schemas.training import OffloadChoice, RecomputeChoice, ZeroChoice
from planner.schemas.workload import Optimizer

Format = Literal["table", "json", "yaml"]
Mode = Literal["serve", "train"]

# Options that only mean something in one mode; giving one in the other mode is an error.
TRAIN_ONLY = ("optimizer", "zero_stage", "offload", "recompute", "micro_batch_size", "sequence_length", "lora_rank",
              "qlora", "fp32_training", "global_batch_size", "sequence_parallel", "estimator", "largest_layer_params")
SERVE_ONLY = ("users", "request_rate", "prompt_tokens", "output_tokens", "min_tokens_per_s", "max_ttft", "objective", "gpu_memory_utilization", "kv_cache",
              "prefill_chunk", "max_sequences", "block_size", "kv_cache_memory_bytes", "enforce_eager")


class _Args(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    explicit: frozenset[str] = Field(frozenset(), description="Options the user gave (not defaults).")


class PrecisionArgs(_Args):
    """--weights, --kv-cache and the per-component overrides."""

    weights: str | None = Field(None, max_length=200, description="Weight format.")
    kv_cache: str | None = Field(None, max_length=200, description="KV-cache dtype.")
    embedding: str | None = Field(None, max_length=200, description="Token embedding format.")
    lm_head: str | None = Field(None, max_length=200, description="Output head format.")
    attention: str | None = Field(None, max_length=200, description="Attention projections format.")
    dense_mlp: str | None = Field(None, max_length=200, description="Dense MLP format.")
    experts: str | None = Field(None, max_length=200, description="Routed experts format.")
    shared_experts: str | None = Field(None, max_length=200, description="Shared experts format.")


class TrainingArgs(PrecisionArgs):
    """The training options `plan memory` and `plan deploy` share."""

    mode: Mode = "serve"
    engine: str | None = Field(None, max_length=100, description="Engine profile id.")
    engine_version: str | None = Field(None, max_length=100, pattern=r"^[0-9A-Za-z][0-9A-Za-z.+\-]*$", description="Engine version.")
    prefill_chunk: int | None = Field(None, ge=1, le=MAX_BATCH)
    max_sequences: int | None = Field(None, ge=1, le=MAX_USERS)
    block_size: int | None = Field(None, ge=1, le=65536)
    enforce_eager: bool = False
    overhead: float | None = Field(None, ge=0, le=1, description="The seed's O on weights.")
    runtime_reserve_gib: float | None = Field(None, ge=0, le=1e6, description="Per-device memory outside the engine, GiB.")
    optimizer: Optimizer = "adamw"
    zero_stage: ZeroChoice = "auto"
    offload: OffloadChoice = "auto"
    recompute: RecomputeChoice = "auto"
    micro_batch_size: int = Field(1, ge=1, le=MAX_BATCH)
    sequence_length: int | None = Field(None, ge=1, le=MAX_CONTEXT_TOKENS)
    lora_rank: int | None = Field(None, ge=1, le=65536)
    qlora: bool = False
    fp32_training: bool = False
    tensor_parallel_size: int | None = Field(None, ge=1, le=4096)
    pipeline_parallel_size: int | None = Field(None, ge=1, le=4096)
    data_parallel_size: int | None = Field(None, ge=1, le=65536)
    layer_split: tuple[int, ...] | None = Field(None, min_length=1, max_length=4096)
    n_cpu_moe: int | None = Field(None, ge=0, le=4096)
    cpu_layers: int | None = Field(None, ge=0, le=4096)

    @field_validator("layer_split", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace("/", ",").split(",")]
            if not all(p.isdigit() and len(p) <= 6 and int(p) > 0 for p in parts):
                raise ValueError(f"expected positive layer counts like 42,38, got {value[:60]!r}")
            return tuple(int(p) for p in parts)
        return value

    @model_validator(mode="after")
    def _check_split(self) -> TrainingArgs:
        if self.layer_split and self.pipeline_parallel_size and len(self.layer_split) != self.pipeline_parallel_size:
            raise ValueError(f"--layer-split lists {len(self.layer_split)} stages, --pipeline-parallel-size is "
                             f"{self.pipeline_parallel_size}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _engine_at_version(cls, data: object) -> object:
        """`--engine vllm@0.10.2` (or `vllm==0.10.2`) is `--engine vllm --engine-version 0.10.2`."""
        if isinstance(data, dict) and isinstance(data.get("engine"), str):
            for separator in ("==", "@"):
                if separator in data["engine"]:
                    name, version = (part.strip() for part in data["engine"].split(separator, 1))
                    if data.get("engine_version") not in (None, version):
                        raise ValueError(f"--engine {data['engine']} and --engine-version {data['engine_version']} disagree")
                    data = {**data, "engine": name, "engine_version": version or None}
                    break
        return data

    @model_validator(mode="after")
    def _check_mode(self) -> TrainingArgs:
        other = TRAIN_ONLY if self.mode == "serve" else SERVE_ONLY
        given = [name for name in other if name in self.explicit]
        if given:
            names = ", ".join(f"--{n.replace('_', '-')}" for n in given)
            if self.mode == "serve":
                raise ValueError(f"{names} appl{'ies' if len(given) == 1 else 'y'} to --mode train only"
                                 + (" (serving with LoRA adapters is not modelled)" if {"lora_rank", "qlora"} & set(given) else ""))
            raise ValueError(f"{names} appl{'ies' if len(given) == 1 else 'y'} to --mode serve only")
        return self


class MemoryArgs(TrainingArgs):
    """`plan memory`."""

    model: str | None = None
    params: str | None = Field(None, max_length=100)
    users: int = Field(1, ge=1, le=MAX_USERS)
    context: int | None = Field(None, ge=1, le=MAX_CONTEXT_TOKENS)
    estimator: Literal["planner", "deepspeed"] = "planner"
    largest_layer_params: str | None = Field(None, max_length=100)
    sequence_parallel: bool = False
    fmt: Format = "table"

    @model_validator(mode="after")
    def _check_model(self) -> MemoryArgs:
        if bool(self.model) == bool(self.params):
            raise ValueError("give exactly one of --model NAME|PATH or --params SIZE")
        if self.params and ((self.tensor_parallel_size or 1) > 1 or (self.pipeline_parallel_size or 1) > 1 or self.layer_split):
            raise ValueError("a bare parameter count has no layers or heads to split: --tensor-parallel-size and "
                             "--pipeline-parallel-size need --model")
        return self


class DeployArgs(TrainingArgs):
    """`plan deploy`."""

    inventory: str | None = Field(None, max_length=4096)
    gpus: str | None = Field(None, max_length=4096)
    nodes: str | None = Field(None, max_length=4096)
    interconnect: str | None = Field(None, max_length=64)
    network: str | None = Field(None, max_length=64)
    model: str
    users: int = Field(1, ge=1, le=MAX_USERS)
    context: int | None = Field(None, ge=1, le=MAX_CONTEXT_TOKENS)
    prompt_tokens: int | None = Field(None, ge=1, le=MAX_CONTEXT_TOKENS)
    output_tokens: int | None = Field(None, ge=1, le=MAX_CONTEXT_TOKENS)
    request_rate: float | None = Field(None, gt=0, le=1e7)
    min_tokens_per_s: float | None = Field(None, gt=0, le=1e9)
    max_ttft: float | None = Field(None, gt=0, le=1e6)
    objective: Objective = "throughput"
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    kv_cache_memory_bytes: int | None = Field(None, ge=1, le=2**50)
    time_limit: float = Field(60.0, ge=0.1, le=MAX_TIME_LIMIT_S)
    global_batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    output: str | None = Field(None, max_length=4096)
    report: str | None = Field(None, max_length=4096)
    pictures: str | None = Field(None, max_length=4096)
    export_to: str | None = None
    out: str | None = Field(None, max_length=4096)
    model_path: str | None = Field(None, max_length=4096)
    fmt: Format = "table"

    @model_validator(mode="after")
    def _check_machines(self) -> DeployArgs:
        given = [name for name, value in (("--inventory", self.inventory), ("--gpus", self.gpus), ("--nodes", self.nodes))
                 if value is not None]
        if len(given) != 1:
            raise ValueError("give the machines with one of --inventory FILE, --gpus DEVICES or --nodes MACHINES"
                             + (f", not {' and '.join(given)}" if given else ""))
        if self.inventory is not None and self.interconnect:
            raise ValueError("--interconnect describes --gpus/--nodes machines; an inventory file names its links")
        if self.inventory is not None and self.network and not getattr(self, "add", ()):
            raise ValueError("--network describes --nodes machines (or, with plan whatif, the link of an added machine); "
                             "an inventory file names its links")
        return self

