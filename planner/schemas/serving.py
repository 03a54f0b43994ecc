"""How the serving engine uses a device's memory, and what a deployment asks for."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.units import GiB

Objective = Literal["throughput", "latency", "cost", "devices"]

# vLLM's default (vllm/engine/arg_utils.py, gpu_memory_utilization = 0.9 through v0.11).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
# Non-torch memory vLLM measured on an RTX 3090 (CUDA context, cuBLAS/NCCL workspaces): 0.35 GiB;
# and CUDA reporting 23.58 GiB of the card's 24 GiB (0.42 GiB kept by driver and firmware).
# vLLM issue #10517 (github.com/vllm-project/vllm/issues/10517), the start-up log.
DEFAULT_RUNTIME_RESERVE_BYTES = int(0.35 * GiB)
DRIVER_RESERVED_BYTES = int(0.42 * GiB)


class ServeRequest(BaseModel):
    """What `plan deploy --mode serve` is asked to do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: int = Field(1, ge=1, description="Concurrent users (sequences) to serve.")
    context: int = Field(4096, ge=1, description="Tokens per user held in the KV cache (prompt plus output).")
    prompt_tokens: int | None = Field(None, ge=1, description="Prompt length for time to first token (default: half the context).")
    prefill_chunk: int = Field(2048, ge=1, description="Tokens per forward pass (vLLM max_num_batched_tokens).")
    min_tokens_per_s: float | None = Field(None, gt=0, description="Every user must decode at least this fast.")
    objective: Objective = Field("throughput", description="What to optimise once everything fits.")
    gpu_memory_utilization: float = Field(
        DEFAULT_GPU_MEMORY_UTILIZATION, gt=0, le=1, description="Share of a GPU's memory the engine may take (vLLM)."
    )
    runtime_reserve_bytes: int = Field(DEFAULT_RUNTIME_RESERVE_BYTES, ge=0, description="Per-device memory outside the engine's allocator.")
    overhead_factor: float = Field(0.0, ge=0, le=1, description="The seed's O on weights, on top of the engine accounting.")
    block_size: int = Field(16, ge=1, description="KV-cache page size in tokens (vLLM block_size).")
