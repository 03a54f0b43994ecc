"""The plan document `plan deploy` writes (JSON/YAML) and `plan show` reads back; `plan schema
plan` publishes its JSON Schema. A serving plan and a training plan are separate types, told
apart by `mode`; `schema_version` changes whenever a reader of the old version would misread the
new one.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from planner.schemas.serving import ServeRequest
from planner.schemas.training import TrainRequest

SCHEMA_VERSION = 5


class SolveStatus(str, Enum):
    """The planner's own solver status."""

    OPTIMAL = "optimal"  # proven best among the candidate layouts
    FEASIBLE = "feasible"  # a plan, with the proven bound and gap
    INFEASIBLE = "infeasible"  # proven: no combination of layouts serves the request
    TIMED_OUT = "timed_out"  # the time limit came before any plan; not a proof of infeasibility


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# ----------------------------------------------------------------------------- what was asked


class ModelRef(_Out):
    """Which model the plan is for."""

    name: str = Field(description="Catalog id, or the name of the config or checkpoint.")
    kind: Literal["catalog", "config", "checkpoint"] = Field(description="Where the model came from.")
    path: str | None = Field(None, description="The config.json or checkpoint read (not for catalog models).")
    hf_repo: str | None = Field(None, description="Hugging Face repository id (catalog models); exports load the model by it unless given --model-path.")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256 of the model's canonical accounting inputs "
                        "(its architecture and, for a checkpoint, every tensor header); equal digests, equal model.")


class PrecisionOut(_Out):
    """The precision mix the plan uses."""

    weights: str = Field(description="Default weight format.")
    kv_cache: str = Field(description="KV-cache dtype.")
    components: dict[str, str] = Field(description="Format of each model component (overrides included).")


class EngineRef(_Out):
    """The engine the plan is for, at the version its figures assume."""

    id: str = Field(description="Engine profile id (planner/catalog/engines/): vllm, sglang, llama.cpp, exo, mlx-lm, deepspeed, megatron.")
    name: str = Field(description="Display name.")
    version: str = Field(description="The engine version the profile's rules and memory figures assume.")
    chosen_by: Literal["option", "rule"] = Field(description="--engine, or the documented rule (docs/engines.md).")
    reason: str = Field(description="Why this engine.")


class ServePlanRequest(ServeRequest):
    """Every input that shaped a serving plan."""

    model: ModelRef = Field(description="The model.")
    precision: PrecisionOut = Field(description="The precision mix.")
    engine: EngineRef = Field(description="The engine the plan runs on.")


class TrainPlanRequest(TrainRequest):
    """Every input that shaped a training plan."""

    model: ModelRef = Field(description="The model.")
    precision: PrecisionOut = Field(description="The precision mix (of the frozen base, for LoRA/QLoRA).")
    engine: EngineRef = Field(description="The training engine.")


class MachineOut(_Out):
    """A machine of the inventory, with where exports reach it."""

    name: str = Field(description="Node name (after count expansion).")
    address: str | None = Field(description="Host name or IP from the inventory (null: exports use a placeholder the run-book lists).")
    api_port: int | None = Field(description="Inventory ports.api (null: the engine's usual port).")
    rendezvous_port: int | None = Field(description="Inventory ports.rendezvous (null: the engine's usual port).")
    rpc_port: int | None = Field(description="Inventory ports.rpc (null: llama.cpp's usual 50052).")


class InventoryRef(_Out):
    """Which inventory the plan is for."""

    name: str = Field(description="Cluster name.")
    path: str | None = Field(None, description="The inventory file read.")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256 of the canonical resolved inventory "
                        "(nodes, devices with their figures and budgets, links); a changed inventory changes it.")
    nodes: int = Field(ge=1, description="Machines.")
    devices: int = Field(ge=1, description="Devices.")
    machines: list[MachineOut] = Field(description="Every machine, in inventory order.")


class SolverOut(_Out):
    """How the plan was found."""

    status: SolveStatus = Field(description="optimal, feasible, infeasible or timed_out.")
    objective_name: str = Field(description="The primary objective term (planner/schemas/objectives.py), or training_tokens_per_s.")
    objective_unit: str = Field(description="Its unit.")
    objective: float | None = Field(description="Its value in the plan.")
    bound: float | None = Field(description="Best proven bound on it.")
    gap: float | None = Field(description="Relative gap between value and bound (0 when optimal).")
    candidates: int = Field(ge=0, description="Layouts considered.")
    rejected: int = Field(ge=0, description="Layouts rejected before solving, each with its reason.")
    stopped_early: bool = Field(False, description="The time limit cut the candidate search short; the plan is the best among those built.")
    cut: list[str] = Field(default_factory=list, description="What the time limit cut from the candidate search, in words (empty when nothing was).")


# ----------------------------------------------------------------------------- serving


class DeviceMemoryOut(_Out):
    """Bytes on one serving device."""

    weights_bytes: int = Field(ge=0, description="Its share of the stage's weights.")
    kv_cache_bytes: int = Field(ge=0, description="KV cache of its layers for the replica's users at the full context, laid out as the engine lays it out (vLLM: whole blocks).")
    activations_bytes: int = Field(ge=0, description="The engine's activation peak over its layers (vLLM: its profile run, the sampler's on the last stage; llama.cpp: its compute buffer).")
    overhead_bytes: int = Field(ge=0, description="The engine's other memory (vLLM: non-torch memory, the rotary cache, estimated CUDA graphs) plus O x weights.")
    total_bytes: int = Field(ge=0, description="Sum of the parts above.")
    capacity_bytes: int = Field(description="What the engine may fill on this device (vLLM: ceil(total x gpu_memory_utilization); SGLang: mem_fraction_static; llama.cpp: free memory; MLX: the wired limit).")


class DeviceOut(_Out):
    """One device of a stage."""

    id: str = Field(description="node/gpuN.")
    node: str = Field(description="Machine.")
    index: int = Field(ge=0, description="Position within the machine (its CUDA device index, in inventory order).")
    type: str = Field(description="Hardware catalog id (or the custom device's name).")
    memory: DeviceMemoryOut = Field(description="Memory on this device.")


class StageOut(_Out):
    """One pipeline stage: a tensor-parallel group holding contiguous layers."""

    index: int = Field(ge=0, description="Position in the pipeline, from 0.")
    layers: tuple[int, int] = Field(description="[first, last_exclusive].")
    tensor_parallel_size: int = Field(ge=1, description="Devices sharing each layer.")
    holds_embedding: bool = Field(description="First stage: the token embedding.")
    holds_lm_head: bool = Field(description="Last stage: final norm and lm_head.")
    decode_step_s: float = Field(ge=0, description="This stage's time for one decode step of its micro-batch, including its link time.")
    kv_cache_tokens: int = Field(ge=0, description="Tokens this stage's free memory holds in the engine's blocks, before the replica takes the smallest stage's.")
    devices: list[DeviceOut] = Field(description="The tensor-parallel ranks.")


class EngineSettingsOut(_Out):
    """What the replica's launch runs with: the engine flags its figures depend on."""

    memory_fraction: float | None = Field(description="vLLM gpu_memory_utilization or SGLang mem_fraction_static (null: the engine takes no share).")
    batch_tokens: int = Field(ge=1, description="Tokens per forward pass: vLLM max_num_batched_tokens, SGLang chunked_prefill_size, llama.cpp ubatch, MLX prefill step.")
    max_sequences: int = Field(ge=1, description="Concurrency cap: vLLM max_num_seqs, SGLang max_running_requests, llama.cpp slots (the engine's default, raised to the replica's users).")
    block_size: int = Field(ge=1, description="KV-cache block (page) in tokens.")
    cuda_graphs: bool = Field(description="CUDA graphs are captured (and their memory counted where the engine counts it).")
    kv_cache_memory_bytes: int | None = Field(description="An explicit KV budget per device, instead of the share.")
    context_tokens: int = Field(ge=1, description="The longest request the launch admits (vLLM max_model_len, SGLang context_length, llama.cpp -c per slot).")
    notes: list[str] = Field(description="Settings changed from the engine's default, and why.")


class HostOffloadOut(_Out):
    """What a replica keeps in its machine's RAM (llama.cpp -ngl below all, --n-cpu-moe)."""

    node: str = Field(description="The machine whose host memory holds it (the llama-server's).")
    layers: tuple[int, int] = Field(description="[0, N): the layers the CPU runs, with their KV cache (empty: none).")
    expert_layers: tuple[int, int] = Field(description="[0, M): layers whose routed experts stay in host memory, attention on the GPU (--n-cpu-moe M).")
    holds_lm_head: bool = Field(description="The output layer runs on the CPU (llama.cpp puts it there whenever a layer runs there).")
    weights_bytes: int = Field(ge=0, description="Weights in host memory: the token embedding, the CPU's layers and head, the experts kept there.")
    kv_cache_bytes: int = Field(ge=0, description="KV cache of the CPU's layers for the replica's users at the full context.")
    total_bytes: int = Field(ge=0, description="Sum of the parts above.")
    capacity_bytes: int = Field(ge=0, description="Host memory less the operating system's 4 GB.")
    memory_bandwidth_gb_s: float = Field(gt=0, description="The host memory's peak bandwidth (GB/s) the speed model reads it at.")
    cpu_cores: int = Field(ge=1, description="CPU cores.")


class ReplicaOut(_Out):
    """A full copy of the model serving some of the users: one launch of the engine."""

    index: int = Field(ge=0, description="Replica number.")
    users: int = Field(ge=1, description="Users this replica serves.")
    decode_tokens_per_s_per_user: float = Field(ge=0, description="Tokens/s each of its users sees, other users' prompts included (1 / time per output token).")
    decode_tokens_per_s: float = Field(ge=0, description="Output tokens/s of all its users, sustained.")
    decode_only_tokens_per_s_per_user: float = Field(ge=0, description="Per-user speed if no prompt arrived (the decode-only ceiling).")
    time_to_first_token_s: float = Field(ge=0, description="Queueing plus the prompt's prefill at this load.")
    queue_s: float = Field(ge=0, description="The part of the time to first token spent waiting for the step budget.")
    prefill_tokens_per_s: float = Field(ge=0, description="Prompt tokens/s of one prompt on an idle replica (llama-bench's pp).")
    requests_per_s: float = Field(ge=0, description="Requests it finishes per second in steady state (Little's law).")
    prefill_share: float = Field(ge=0, le=1, description="Share of its step time spent on prompts.")
    bottleneck: str = Field(description="What limits it: memory bandwidth, compute, link or prefill competition, and a full cache.")
    engine: EngineSettingsOut = Field(description="The launch's settings.")
    kv_cache_tokens: int = Field(ge=0, description="The cache size the engine reports at start-up (vLLM 'GPU KV cache size: N tokens', SGLang max_total_num_tokens, llama.cpp n_ctx).")
    max_concurrency: float = Field(ge=0, description="Requests of the full context the cache holds at once (vLLM 'Maximum concurrency for C tokens per request').")
    max_users: int = Field(ge=0, description="Whole users at the requested context the replica could hold.")
    longest_sequence_tokens: int = Field(ge=0, description="The longest single request its cache holds, capped at the model's maximum context.")
    stages: list[StageOut] = Field(description="Pipeline stages in order.")
    host_offload: HostOffloadOut | None = Field(None, description="What the machine's RAM holds (null: everything is on the devices).")


class PerformanceOut(_Out):
    """Expected serving speed."""

    decode_tokens_per_s_per_user: float = Field(ge=0, description="The slowest replica's per-user decode speed under load.")
    decode_tokens_per_s_total: float = Field(ge=0, description="Output tokens/s of all users together, sustained.")
    time_to_first_token_s: float = Field(ge=0, description="The slowest replica's time to first token, queueing included.")
    requests_per_s: float = Field(ge=0, description="Requests the plan finishes per second in steady state.")
    prompt_tokens: int = Field(ge=1, description="Tokens in each request's prompt.")
    output_tokens: int = Field(ge=1, description="Tokens each request generates.")
    bottleneck: str = Field(description="Which replica and stage limits speed, and by what.")
    tier: str = Field(description="The seed guide's verdict: painful (< 10), acceptable (10-20), smooth (20+).")


class CapacityOut(_Out):
    """How much the plan could hold, in the engine's own terms (docs/engines.md)."""

    kv_cache_tokens: int = Field(ge=0, description="The cache size the engine reports at start-up, of the smallest replica (vLLM 'GPU KV cache size: N tokens').")
    max_concurrency: float = Field(ge=0, description="Requests of the full context one replica holds at once, the smallest replica's (vLLM 'Maximum concurrency for C tokens per request').")
    max_users: int = Field(ge=0, description="Users at the requested context the whole plan could hold (every replica's whole users).")
    longest_sequence_tokens: int = Field(ge=0, description="The longest single request some replica holds, capped at the model's maximum context.")


class ServePlan(_Out):
    """A serving plan."""

    schema_version: Literal[5] = Field(SCHEMA_VERSION, description="Version of this document's schema.")
    mode: Literal["serve"] = Field("serve", description="A serving plan.")
    request: ServePlanRequest = Field(description="Every input that shaped the plan.")
    inventory: InventoryRef = Field(description="The inventory planned on.")
    replicas: list[ReplicaOut] = Field(description="Replicas, each a chain of stages (empty without a plan).")
    performance: PerformanceOut | None = Field(description="Expected speed (null without a plan).")
    capacity: CapacityOut | None = Field(description="KV capacity and maximum concurrency (null without a plan).")
    unused_devices: list[str] = Field(description="Devices the plan leaves idle.")
    verification: list[str] = Field(description="Violations the independent verifier found (empty when the plan is sound).")
    solver: SolverOut = Field(description="Solver status, objective and bound.")
    explanation: list[str] = Field(default_factory=list, description="Why there is no plan and the smallest changes that would fit.")


# ----------------------------------------------------------------------------- training


class TrainDeviceMemoryOut(_Out):
    """Bytes on one training device."""

    weights_bytes: int = Field(ge=0, description="Parameters kept on the device (16-bit, or the frozen base for LoRA).")
    gradients_bytes: int = Field(ge=0, description="Gradients kept on the device.")
    optimizer_bytes: int = Field(ge=0, description="Optimizer states and fp32 master weights kept on the device.")
    activations_bytes: int = Field(ge=0, description="Activations stored for the backward pass, micro-batches in flight included.")
    overhead_bytes: int = Field(ge=0, description="O x weights plus the runtime's fixed reserve.")
    total_bytes: int = Field(ge=0, description="Sum of the parts above.")
    capacity_bytes: int = Field(description="What the device lends to training.")
    cpu_offload_bytes: int = Field(ge=0, description="States this device keeps in host memory.")


class TrainDeviceOut(_Out):
    """One device of a training stage."""

    id: str = Field(description="node/gpuN.")
    node: str = Field(description="Machine.")
    index: int = Field(ge=0, description="Position within the machine (its CUDA device index, in inventory order).")
    type: str = Field(description="Hardware catalog id.")
    memory: TrainDeviceMemoryOut = Field(description="Memory on this device.")


class TrainStageOut(_Out):
    """One pipeline stage of a data-parallel rank."""

    index: int = Field(ge=0, description="Position in the pipeline, from 0.")
    layers: tuple[int, int] = Field(description="[first, last_exclusive].")
    holds_embedding: bool = Field(description="First stage: the token embedding.")
    holds_lm_head: bool = Field(description="Last stage: final norm and lm_head.")
    devices: list[TrainDeviceOut] = Field(description="The tensor-parallel ranks.")


class TrainRankOut(_Out):
    """One data-parallel rank: a full pipeline."""

    index: int = Field(ge=0, description="Data-parallel rank.")
    stages: list[TrainStageOut] = Field(description="Pipeline stages in order.")


class TrainLayoutOut(_Out):
    """The chosen training layout."""

    device_type: str = Field(description="The device model trained on.")
    tensor_parallel_size: int = Field(ge=1, description="Devices sharing every layer.")
    pipeline_parallel_size: int = Field(ge=1, description="Pipeline stages.")
    data_parallel_size: int = Field(ge=1, description="Data-parallel ranks.")
    zero_stage: int = Field(ge=0, le=3, description="ZeRO stage (0-3).")
    offload: str = Field(description="none, optimizer, or optimizer+params (to CPU memory).")
    recompute: str = Field(description="Activation recomputation: none, selective or full.")
    sequence_parallel: bool = Field(description="Megatron sequence parallelism (on with tensor parallelism).")
    micro_batch_size: int = Field(ge=1, description="Sequences per device per micro-step.")
    gradient_accumulation_steps: int = Field(ge=1, description="Micro-batches per data-parallel rank per optimizer step.")
    global_batch_size: int = Field(ge=1, description="Sequences per optimizer step.")
    sequence_length: int = Field(ge=1, description="Tokens per sequence.")


class TrainPerformanceOut(_Out):
    """Expected training speed."""

    step_time_s: float = Field(ge=0, description="Seconds per optimizer step.")
    tokens_per_s: float = Field(ge=0, description="Training tokens per second.")
    mfu: float = Field(ge=0, description="Model FLOPs utilisation: useful FLOPs / (time x devices x peak).")
    bottleneck: str = Field(description="The largest part of the step: compute, bubble, a link, or offload.")


class TrainPlan(_Out):
    """A training plan."""

    schema_version: Literal[5] = Field(SCHEMA_VERSION, description="Version of this document's schema.")
    mode: Literal["train"] = Field("train", description="A training plan.")
    request: TrainPlanRequest = Field(description="Every input that shaped the plan.")
    inventory: InventoryRef = Field(description="The inventory planned on.")
    layout: TrainLayoutOut | None = Field(description="The chosen layout (null without a plan).")
    ranks: list[TrainRankOut] = Field(description="Data-parallel ranks, each a pipeline of stages (empty without a plan).")
    performance: TrainPerformanceOut | None = Field(description="Expected speed (null without a plan).")
    unused_devices: list[str] = Field(description="Devices the plan leaves idle.")
    verification: list[str] = Field(description="Violations the independent verifier found (empty when the plan is sound).")
    solver: SolverOut = Field(description="Solver status, objective and bound.")
    explanation: list[str] = Field(default_factory=list, description="Why there is no plan and what to try.")


Plan = Annotated[ServePlan | TrainPlan, Field(discriminator="mode")]
PLAN_ADAPTER: TypeAdapter[ServePlan | TrainPlan] = TypeAdapter(Plan)


def build_plan_schema() -> dict:
    """The JSON Schema of plan files."""
    schema = PLAN_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "planner plan"
    schema["description"] = f"A plan written by `plan deploy` (schema_version {SCHEMA_VERSION})."
    return schema
