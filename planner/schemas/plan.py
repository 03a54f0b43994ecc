"""A deployment plan as `plan deploy` writes it (JSON/YAML); `plan schema plan` publishes this."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeviceMemoryOut(_Out):
    """Bytes on one device."""

    weights_bytes: int = Field(description="Its share of the stage's weights.")
    kv_cache_bytes: int = Field(description="KV cache of its layers for the replica's users at the full context.")
    activations_bytes: int = Field(description="Prefill-chunk activation peak, plus fp32 logits on the last stage.")
    overhead_bytes: int = Field(description="O x weights plus the runtime's fixed reserve.")
    gradients_bytes: int = Field(0, description="Training: gradients kept on this device.")
    optimizer_bytes: int = Field(0, description="Training: optimizer states and master weights kept on this device.")
    total_bytes: int = Field(description="Sum of the parts above.")
    capacity_bytes: int = Field(description="What the engine may use on this device (gpu_memory_utilization, wired limit).")


class DeviceOut(_Out):
    """One device of a stage."""

    id: str = Field(description="node/gpuN.")
    node: str = Field(description="Machine.")
    type: str = Field(description="Hardware catalog id.")
    memory: DeviceMemoryOut = Field(description="Memory on this device.")


class StageOut(_Out):
    """One pipeline stage: a tensor-parallel group holding contiguous layers."""

    index: int = Field(description="Position in the pipeline, from 0.")
    layers: tuple[int, int] = Field(description="[first, last_exclusive].")
    tensor_parallel_size: int = Field(description="Devices sharing each layer.")
    holds_embedding: bool = Field(description="First stage: the token embedding.")
    holds_lm_head: bool = Field(description="Last stage: final norm and lm_head.")
    decode_step_s: float = Field(description="This stage's share of one decode step, including its link time.")
    devices: list[DeviceOut] = Field(description="The tensor-parallel ranks.")


class ReplicaOut(_Out):
    """A full copy of the model serving some of the users."""

    index: int = Field(description="Replica number.")
    users: int = Field(description="Users this replica serves.")
    decode_tokens_per_s_per_user: float = Field(description="Tokens/s each of its users sees.")
    time_to_first_token_s: float = Field(description="Prefill of one prompt plus the first decode step.")
    kv_cache_tokens: int = Field(description="KV-cache tokens the replica's memory holds (whole pages).")
    stages: list[StageOut] = Field(description="Pipeline stages in order.")


class PerformanceOut(_Out):
    """Expected speed."""

    decode_tokens_per_s_per_user: float = Field(description="The slowest replica's per-user decode speed.")
    decode_tokens_per_s_total: float = Field(description="All users together.")
    time_to_first_token_s: float = Field(description="The slowest replica's time to first token.")
    bottleneck: str = Field(description="Which replica and stage limits speed, and by what.")
    tier: str = Field(description="The seed guide's verdict: painful (< 10), acceptable (10-20), smooth (20+).")


class CapacityOut(_Out):
    """How much the plan could hold."""

    kv_cache_tokens: int = Field(description="KV-cache tokens one sequence could hold per replica (the smallest replica's; sliding layers keep their window).")
    max_users: int = Field(description="Most concurrent users at the requested context over all replicas (vLLM's maximum concurrency), each user's logits included.")


class SolverOut(_Out):
    """How the plan was found."""

    status: str = Field(description="optimal, feasible, infeasible or timed_out.")
    wall_s: float = Field(description="Candidate generation plus solving, seconds.")
    objective_name: str = Field(description="The primary objective term (total_tokens_per_s, slowest_user_speed, cost_usd, devices_used, training_tokens_per_s).")
    objective: float | None = Field(description="Its value in the plan (tokens/s, USD or devices).")
    bound: float | None = Field(description="Best proven bound on it.")
    gap: float | None = Field(description="Relative gap between value and bound (0 when optimal).")
    candidates: int = Field(description="Replica layouts considered.")
    rejected: int = Field(description="Layouts rejected before solving, each with its reason.")


class TrainingOut(_Out):
    """The chosen training layout and its expected speed."""

    device_type: str = Field(description="The device class trained on.")
    tensor_parallel_size: int = Field(description="Devices sharing every layer.")
    pipeline_parallel_size: int = Field(description="Pipeline stages.")
    data_parallel_size: int = Field(description="Data-parallel ranks.")
    zero_stage: int = Field(description="ZeRO stage (0-3).")
    offload: str = Field(description="none, optimizer, or optimizer+params (to CPU memory).")
    recompute: str = Field(description="Activation recomputation: none, selective or full.")
    micro_batch_size: int = Field(description="Sequences per device per micro-step.")
    gradient_accumulation_steps: int = Field(description="Micro-batches per data-parallel rank per optimizer step.")
    global_batch_size: int = Field(description="Sequences per optimizer step.")
    sequence_length: int = Field(description="Tokens per sequence.")
    step_time_s: float = Field(description="Seconds per optimizer step.")
    tokens_per_s: float = Field(description="Training tokens per second.")
    mfu: float = Field(description="Model FLOPs utilisation: useful FLOPs / (time x devices x peak).")
    bottleneck: str = Field(description="The largest part of the step: compute, bubble, a link, or offload.")
    cpu_offload_bytes_per_device: int = Field(description="Host memory each device's offloaded states take.")


class PlanOut(_Out):
    """A deployment plan."""

    status: str = Field(description="optimal, feasible, infeasible or timed_out.")
    model: str = Field(description="Model name.")
    inventory: str = Field(description="Cluster name.")
    request: dict = Field(description="Users, context, precision and engine settings used.")
    replicas: list[ReplicaOut] = Field(description="Replicas, each a chain of stages.")
    performance: PerformanceOut | None = Field(description="Expected speed (null without a plan).")
    capacity: CapacityOut | None = Field(description="KV capacity and maximum concurrency (null without a plan).")
    unused_devices: list[str] = Field(description="Devices the plan leaves idle.")
    verification: list[str] = Field(description="Violations the independent verifier found (empty when the plan is sound).")
    solver: SolverOut = Field(description="Solver status, time, objective and bound.")
    explanation: list[str] = Field(default_factory=list, description="Why there is no plan and the smallest changes that would fit.")
    training: TrainingOut | None = Field(None, description="Training only: the layout and its speed (replicas are data-parallel ranks).")
