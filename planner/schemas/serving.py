"""How the serving engine uses a device's memory, and what a deployment asks for."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.limits import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_TIME_LIMIT_S, MAX_USERS
from planner.schemas.objectives import Objective
from planner.units import GiB

# The engine-neutral accounting's share (vLLM's default through 0.19; estimate/engines/generic.py).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
# Non-torch memory vLLM measured on an RTX 3090 (CUDA context, cuBLAS/NCCL workspaces): 0.35 GiB;
# and CUDA reporting 23.58 GiB of the card's 24 GiB (0.42 GiB kept by driver and firmware).
# vLLM issue #10517 (github.com/vllm-project/vllm/issues/10517), the start-up log.
DEFAULT_RUNTIME_RESERVE_BYTES = int(0.35 * GiB)
DRIVER_RESERVED_BYTES = int(0.42 * GiB)
DEFAULT_TIME_LIMIT_S = 60.0
DEFAULT_PREFILL_CHUNK = 2048  # vLLM's max_num_batched_tokens with chunked prefill (v0.6+)


class ServeRequest(BaseModel):
    """What `plan deploy --mode serve` is asked to do: every input that shapes the plan."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    users: int = Field(1, ge=1, le=MAX_USERS, description="Concurrent users (sequences) to serve.")
    context: int = Field(4096, ge=1, le=MAX_CONTEXT_TOKENS, description="Tokens per user held in the KV cache (prompt plus output).")
    prompt_tokens: int | None = Field(None, ge=1, le=MAX_CONTEXT_TOKENS, description="Tokens in each request's prompt (default: half the context, or the context less the output).")
    output_tokens: int | None = Field(None, ge=1, le=MAX_CONTEXT_TOKENS, description="Tokens each request generates (default: the context less the prompt).")
    prefill_chunk: int | None = Field(None, ge=1, le=MAX_BATCH, description="Tokens per forward pass: vLLM max_num_batched_tokens, SGLang chunked_prefill_size, llama.cpp ubatch (null: the engine's default on each device).")
    max_sequences: int | None = Field(None, ge=1, le=MAX_USERS, description="The engine's concurrency cap: vLLM max_num_seqs, SGLang max_running_requests, llama.cpp slots (null: its default, raised to the users a replica serves).")
    min_tokens_per_s: float | None = Field(None, gt=0, le=1e9, description="Every user must decode at least this fast, under load.")
    max_ttft_s: float | None = Field(None, gt=0, le=1e6, description="Every request must see its first token within this many seconds, queueing included.")
    request_rate: float | None = Field(None, gt=0, le=1e7, description="Requests per second to sustain; `users` is then the concurrency that takes (Little's law).")
    objective: Objective = Field("throughput", description="What to optimise once everything fits (planner/schemas/objectives.py).")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Share of a GPU's memory the engine takes: vLLM gpu_memory_utilization, SGLang mem_fraction_static (null: the engine's default)."
    )
    kv_cache_memory_bytes: int | None = Field(None, ge=1, le=2**50, description="An explicit KV-cache budget per device (vLLM --kv-cache-memory-bytes), instead of the share.")
    enforce_eager: bool = Field(False, description="No CUDA graphs (vLLM --enforce-eager): no graph memory.")
    runtime_reserve_bytes: int | None = Field(None, ge=0, le=2**50, description="Per-device memory outside the engine's own accounting, replacing its estimate of non-torch memory (null: the engine's).")
    overhead_factor: float = Field(0.0, ge=0, le=1, description="The seed's O on weights, on top of the engine accounting.")
    block_size: int | None = Field(None, ge=1, le=2**16, description="KV-cache page size in tokens (vLLM block_size; null: the engine's).")
    time_limit_s: float = Field(DEFAULT_TIME_LIMIT_S, gt=0, le=MAX_TIME_LIMIT_S, description="Wall-clock limit for the whole run, seconds.")
    tensor_parallel_size: int | None = Field(None, ge=1, le=4096, description="Pinned: every stage uses this many devices (null: chosen).")
    pipeline_parallel_size: int | None = Field(None, ge=1, le=4096, description="Pinned: every replica has this many stages (null: chosen).")
    data_parallel_size: int | None = Field(None, ge=1, le=65536, description="Pinned: this many replicas (null: chosen).")
    layer_split: tuple[int, ...] | None = Field(None, description="Pinned: layers per stage, in order (null: chosen).")
    n_cpu_moe: int | None = Field(None, ge=0, le=4096, description="Pinned: the routed experts of the first N layers stay in host memory (llama.cpp --n-cpu-moe; null: the least offload that fits).")
    cpu_layers: int | None = Field(None, ge=0, le=4096, description="Pinned: the first N layers and the output layer run on the CPU (llama.cpp -ngl = the rest; null: the least offload that fits).")

    @model_validator(mode="before")
    @classmethod
    def _default_lengths(cls, data: object) -> object:
        if isinstance(data, dict):
            context = data.get("context", 4096)
            if isinstance(context, int) and not isinstance(context, bool):
                prompt, output = data.get("prompt_tokens"), data.get("output_tokens")
                if prompt is None:
                    prompt = max(1, context - output) if isinstance(output, int) and output < context else max(1, context // 2)
                    data = {**data, "prompt_tokens": prompt}
                if output is None and isinstance(prompt, int):
                    data = {**data, "output_tokens": max(1, context - prompt)}
                elif isinstance(output, int) and isinstance(prompt, int) and prompt + output > context:
                    raise ValueError(f"a {prompt:,}-token prompt and {output:,} output tokens do not fit a {context:,}-token context")
        return data

    @model_validator(mode="after")
    def _check_prompt(self) -> ServeRequest:
        if self.prompt_tokens is not None and self.prompt_tokens > self.context:
            raise ValueError(f"a {self.prompt_tokens:,}-token prompt does not fit a {self.context:,}-token context")
        return self
