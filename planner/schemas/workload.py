"""What the model is asked to do (serve or train) and how it is split across devices."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.limits import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_USERS
from planner.schemas.serving import DEFAULT_RUNTIME_RESERVE_BYTES

Optimizer = Literal["adamw", "adam", "adamw_8bit", "adafactor", "lion", "sgd_momentum", "sgd"]
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "adamw_8bit", "adafactor", "lion", "sgd_momentum", "sgd")
Recompute = Literal["none", "selective", "full"]
Offload = Literal["none", "optimizer", "optimizer+params"]

# Seed guide: O "commonly 0.1-0.3, covering alignment/padding/framework overhead". Used for the
# seed's quick estimate (--params); exact accounting counts those parts itself and uses 0.
SEED_OVERHEAD_FACTOR = 0.10

__all__ = [
    "DEFAULT_RUNTIME_RESERVE_BYTES",
    "OPTIMIZERS",
    "SEED_OVERHEAD_FACTOR",
    "LoRASpec",
    "Offload",
    "Optimizer",
    "Parallelism",
    "Recompute",
    "ServeWorkload",
    "TrainWorkload",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Parallelism(_Frozen):
    """How one copy of the model is split, and how many copies run side by side."""

    tensor_parallel_size: int = Field(1, ge=1, le=4096, description="Devices sharing every layer (Megatron tensor parallel).")
    pipeline_parallel_size: int = Field(1, ge=1, le=4096, description="Consecutive groups of layers on different devices.")
    data_parallel_size: int = Field(1, ge=1, le=65536, description="Model copies (serving replicas or training data-parallel ranks).")


class ServeWorkload(_Frozen):
    """Inference: concurrent users, each with a context of tokens."""

    users: int = Field(1, ge=1, le=MAX_USERS, description="Concurrent sequences (requests) held in the KV cache.")
    context: int = Field(4096, ge=1, le=MAX_CONTEXT_TOKENS, description="Tokens per sequence (prompt plus output).")
    prefill_chunk: int | None = Field(
        None, ge=1, le=MAX_BATCH, description="Tokens processed in one forward pass (null: the engine's default)."
    )
    overhead_factor: float = Field(0.0, ge=0, le=1, description="The seed's O: extra fraction of weight memory.")
    runtime_reserve_bytes: int | None = Field(
        None, ge=0, le=2**50, description="Fixed per-device memory outside the engine's accounting (null: the engine's)."
    )


class LoRASpec(_Frozen):
    """Low-rank adapters on the attention and MLP projections; the base is frozen."""

    rank: int = Field(16, ge=1, le=65536, description="Adapter rank r.")
    targets: tuple[Literal["attention", "dense_mlp", "experts", "shared_experts"], ...] = Field(
        ("attention", "dense_mlp", "shared_experts"), description="Components that get adapters."
    )


class TrainWorkload(_Frozen):
    """Training or fine-tuning, one layout: what the memory and speed estimates take."""

    micro_batch_size: int = Field(1, ge=1, le=MAX_BATCH, description="Sequences per device per step (b).")
    sequence_length: int = Field(4096, ge=1, le=MAX_CONTEXT_TOKENS, description="Tokens per sequence (s).")
    optimizer: Optimizer = Field("adamw", description="Optimizer whose states are kept.")
    mixed_precision: bool = Field(True, description="16-bit weights and gradients with fp32 master weights.")
    recompute: Recompute = Field("none", description="Activation recomputation (Korthikanti et al. 2022).")
    sequence_parallel: bool = Field(False, description="Shard the non-tensor-parallel activations too.")
    zero_stage: int = Field(0, ge=0, le=3, description="ZeRO stage: 1 optimizer, 2 +gradients, 3 +parameters.")
    offload: Offload = Field("none", description="Model states kept in CPU memory (ZeRO-Offload; params need stage 3).")
    lora: LoRASpec | None = Field(None, description="Train adapters only (LoRA; QLoRA when weights are 4-bit).")
    overhead_factor: float = Field(0.0, ge=0, le=1, description="The seed's O on weights.")
    runtime_reserve_bytes: int = Field(DEFAULT_RUNTIME_RESERVE_BYTES, ge=0, le=2**50, description="Fixed per-device reserve.")
