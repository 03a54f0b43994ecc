"""What `plan deploy --mode train` is asked to do: every input that shapes a training plan."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.limits import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_TIME_LIMIT_S
from planner.schemas.serving import DEFAULT_RUNTIME_RESERVE_BYTES, DEFAULT_TIME_LIMIT_S
from planner.schemas.workload import LoRASpec, Optimizer

ZeroChoice = Literal["auto", 0, 1, 2, 3]
OffloadChoice = Literal["auto", "none", "optimizer", "optimizer+params"]
RecomputeChoice = Literal["auto", "none", "selective", "full"]


class TrainRequest(BaseModel):
    """A training job; `auto` fields are chosen by the planner."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    global_batch_size: int = Field(64, ge=1, le=MAX_BATCH, description="Sequences per optimizer step.")
    micro_batch_size: int = Field(1, ge=1, le=MAX_BATCH, description="Sequences per device per micro-step.")
    sequence_length: int = Field(4096, ge=1, le=MAX_CONTEXT_TOKENS, description="Tokens per sequence.")
    optimizer: Optimizer = Field("adamw", description="Optimizer whose states are kept.")
    mixed_precision: bool = Field(True, description="16-bit weights and gradients with fp32 master weights.")
    recompute: RecomputeChoice = Field("auto", description="Activation recomputation, or auto to choose.")
    zero_stage: ZeroChoice = Field("auto", description="ZeRO stage, or auto to choose.")
    offload: OffloadChoice = Field("auto", description="States kept in CPU memory, or auto to choose.")
    lora: LoRASpec | None = Field(None, description="Train adapters only (LoRA; QLoRA with a 4-bit base).")
    overhead_factor: float = Field(0.0, ge=0, le=1, description="The seed's O on weights.")
    runtime_reserve_bytes: int = Field(DEFAULT_RUNTIME_RESERVE_BYTES, ge=0, le=2**50, description="Per-device memory outside the framework.")
    time_limit_s: float = Field(DEFAULT_TIME_LIMIT_S, gt=0, le=MAX_TIME_LIMIT_S, description="Wall-clock limit for the whole run, seconds.")
    tensor_parallel_size: int | None = Field(None, ge=1, le=4096, description="Pinned tensor-parallel size (null: chosen).")
    pipeline_parallel_size: int | None = Field(None, ge=1, le=4096, description="Pinned pipeline stages (null: chosen).")
    data_parallel_size: int | None = Field(None, ge=1, le=65536, description="Pinned data-parallel ranks (null: chosen).")

    @model_validator(mode="after")
    def _check_batch(self) -> "TrainRequest":
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(f"global batch {self.global_batch_size} is not a multiple of micro-batch {self.micro_batch_size}")
        return self
