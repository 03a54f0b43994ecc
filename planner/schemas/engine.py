"""An engine profile (planner/catalog/engines/<id>.yaml): what a serving or training engine can
run — layouts, hardware, formats — and how it accounts memory, every figure with its source.
The candidates step reads it; adding an engine means adding a profile (and an exporter), not
editing the solver."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.schemas.hardware import DeviceKind
from planner.schemas.precision import FormatFamily

Vendor = Literal["nvidia", "amd", "apple", "intel", "other"]
MemoryModel = Literal["vllm", "sglang", "llama.cpp", "mlx", "training"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Where(_Frozen):
    """Devices a capability covers: a vendor (and device kinds), from a minimum compute capability."""

    vendor: Vendor = Field(description="Device vendor.")
    kinds: tuple[DeviceKind, ...] = Field(("gpu", "apple-silicon", "soc"), description="Device kinds.")
    min_compute_capability: float | None = Field(None, ge=1, le=20, description="NVIDIA: the lowest compute capability.")
    gfx_targets: tuple[str, ...] | None = Field(
        None, description="AMD: the LLVM targets covered, by prefix (gfx94 covers gfx942); none: every target.")

    def covers(self, spec: object) -> bool:
        """True when a device (HardwareSpec) is one of these."""
        if getattr(spec, "vendor", None) != self.vendor or getattr(spec, "kind", None) not in self.kinds:
            return False
        if self.min_compute_capability is not None and (getattr(spec, "capability", None) or 0) < self.min_compute_capability:
            return False
        target = getattr(spec, "gfx_target", None)
        return self.gfx_targets is None or (target is not None and any(target.startswith(t) for t in self.gfx_targets))


class FormatSupport(_Frozen):
    """A format family the engine runs, and on which devices."""

    family: FormatFamily = Field(description="Format family (planner/schemas/precision.py).")
    where: tuple[Where, ...] = Field((), description="Devices it runs on; empty: wherever the engine runs.")
    engine_name: str | None = Field(None, description="What the engine calls it (its --quantization or --kv-cache-dtype value).")
    source: str = Field(min_length=8, description="Where this support is stated in the engine's code or docs.")


class EngineLayout(_Frozen):
    """How the engine may split one replica of a model."""

    tensor_parallel: Literal["uniform", "none"] = Field(
        description="uniform: one tensor-parallel size for every pipeline stage; none: no tensor parallelism.")
    tensor_parallel_across_machines: bool = Field(
        False, description="A tensor-parallel group may span machines (exo, MLX over Thunderbolt RDMA).")
    pipeline: Literal["uneven", "even", "none"] = Field(
        description="uneven: any contiguous layer counts per stage; even: equal counts only; none: one stage.")
    pipeline_layers_divisible: bool = Field(
        False, description="With even stages, the layers must divide by the stages (mlx-lm drops the remainder).")
    tensor_and_pipeline: bool = Field(description="Tensor and pipeline parallelism combine in one replica.")
    multi_machine_replica: bool = Field(description="One replica may span machines.")
    same_devices_per_machine: bool = Field(
        description="A replica spanning machines uses the same number of devices on each (vLLM: world size % nnodes == 0).")
    mixed_device_types: bool = Field(description="One replica may mix device models (llama.cpp over RPC, exo).")
    max_devices_per_replica: int | None = Field(None, ge=1, description="The most devices one replica may use.")
    embedding_on_host: bool = Field(False, description="The token embedding stays in host memory (llama.cpp).")
    host_offload: bool = Field(False, description="Layers or routed experts may stay in the machine's RAM when the GPUs "
                               "cannot hold them (llama.cpp -ngl, --n-cpu-moe).")
    replicas: Literal["separate", "data_parallel"] = Field(
        "separate", description="How replicas run: separate launches behind a router, or data-parallel ranks of one launch.")
    source: str = Field(min_length=8, description="Where these rules come from.")


class EngineMemory(_Frozen):
    """How the engine sizes memory on a device (the figures its memory model needs)."""

    model: MemoryModel = Field(description="Which memory model applies (planner/estimate/engines/).")
    prefill_chunk_tokens: int | None = Field(
        None, ge=1, description="Default tokens per forward pass (llama.cpp ubatch, MLX prefill step), where it is one number; "
                                "vLLM's and SGLang's depend on the version and the device (planner/estimate/engines/).")
    max_sequences: int | None = Field(None, ge=1, description="Default sequences decoded together (llama.cpp slots, MLX decode batch).")
    prefill_sequences: int | None = Field(None, ge=1, description="Prompts prefilled together (MLX prefill batch).")
    source: str = Field(min_length=8, description="Where the figures come from.")


class EngineSpeed(_Frozen):
    """How the engine schedules work, which decides its speed (planner/estimate/serving.py)."""

    speed_class: Literal["gpu-server", "llama.cpp", "mlx", "training"] = Field(
        description="Which fitted efficiencies apply (planner/catalog/calibration.yaml).")
    pipeline_overlap: bool = Field(
        description="Decode micro-batches of different users run on different pipeline stages at once (vLLM, SGLang).")
    chunked_prefill: bool = Field(
        description="Prompts are cut into chunks that share forward passes with everyone's decode; otherwise a prompt's "
                    "prefill stops decoding while it runs.")
    prefill_pipelined: bool = Field(
        False, description="One prompt's chunks flow through the pipeline stages overlapped (llama.cpp's pipeline parallelism).")
    source: str = Field(min_length=8, description="Where the scheduling rules come from.")


class TrainingRules(_Frozen):
    """What a training engine accepts of ZeRO, offload and pipeline splits."""

    zero_stages: tuple[int, ...] = Field(description="ZeRO stages it runs (Megatron's distributed optimizer is stage 1).")
    pipeline_max_zero_stage: int | None = Field(None, ge=0, le=3, description="The highest ZeRO stage allowed with pipeline parallelism.")
    offloads: tuple[Literal["none", "optimizer", "optimizer+params"], ...] = Field(description="CPU offloads it runs.")
    pipeline_split: Literal["balanced", "first_last"] = Field(
        description="balanced: stage layer counts differ by at most one; first_last: middle stages equal, first and last may differ.")
    source: str = Field(min_length=8, description="Where these rules come from.")


class EngineProfile(_Frozen):
    """One engine, at one version."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="Name used with --engine.")
    name: str = Field(description="Display name.")
    kind: Literal["serve", "train"] = Field(description="Serving or training.")
    version: str = Field(description="The engine version the profile's figures assume.")
    source: str = Field(min_length=8, description="What was read: release, commit, files.")
    runs_on: tuple[Where, ...] = Field(min_length=1, description="The devices the engine runs on.")
    layout: EngineLayout = Field(description="Layouts it can run.")
    weights: tuple[FormatSupport, ...] = Field(min_length=1, description="Weight formats it runs.")
    kv_cache: tuple[FormatSupport, ...] = Field((), description="KV-cache dtypes it runs (serving).")
    memory: EngineMemory = Field(description="Its memory accounting.")
    speed: EngineSpeed = Field(description="Its scheduling, for the speed model.")
    training: TrainingRules | None = Field(None, description="Training engines: ZeRO, offload and pipeline rules.")
    fallback_weights: str | None = Field(None, description="Weight format used by default when the model's own cannot run here.")
    notes: str | None = Field(None, description="What it cannot run, and other limits worth knowing.")

    @model_validator(mode="after")
    def _check(self) -> "EngineProfile":
        if self.kind == "serve" and not self.kv_cache:
            raise ValueError("a serving engine lists the KV-cache dtypes it runs")
        if (self.kind == "train") != (self.training is not None):
            raise ValueError("training rules go with (and only with) a training engine")
        layout = self.layout
        if layout.pipeline_layers_divisible and layout.pipeline != "even":
            raise ValueError("pipeline_layers_divisible applies to even pipelines")
        return self
