"""A device the planner can place work on: a GPU, an accelerator or an Apple Silicon machine."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DeviceKind = Literal["gpu", "apple-silicon", "soc"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def price_date(value: str) -> datetime.date:
    """The first day a price date (YYYY, YYYY-MM or YYYY-MM-DD) names."""
    parts = [int(x) for x in value.split("-")]
    return datetime.date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)


def check_price_date(value: str) -> str:
    """A real calendar date (YYYY, YYYY-MM or YYYY-MM-DD)."""
    try:
        price_date(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a date: {exc}") from None
    return value


class Price(_Frozen):
    """What one unit costs, when and according to whom."""

    usd: float = Field(gt=0, description="Price in US dollars.")
    date: str = Field(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$",
                      description="When the price was seen (YYYY-MM or YYYY-MM-DD; YYYY when only the year is known).")
    source: str = Field(min_length=4, description="Where the price was seen.")

    _date = field_validator("date")(check_price_date)


class HardwareSpec(_Frozen):
    """Vendor figures for one device model; every entry names its source."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="Catalog id (e.g. rtx-4090, m2-ultra-76c-192gb).")
    name: str = Field(description="Marketing name.")
    vendor: Literal["nvidia", "amd", "apple", "intel", "other"] = Field(description="Who makes it.")
    kind: DeviceKind = Field(description="gpu (discrete memory), apple-silicon or soc (other unified-memory systems).")
    memory_gib: float = Field(gt=0, description="Memory capacity in GiB (vendors' 'GB' for GPU and unified memory is binary).")
    memory_bandwidth_gb_s: float = Field(gt=0, description="Peak memory bandwidth in GB/s (10^9 bytes/s).")
    fp32_tflops: float = Field(gt=0, description="Dense FP32 peak (non-tensor).")
    fp16_tflops: float = Field(gt=0, description="Dense FP16/BF16 peak with tensor cores where present.")
    bf16_tflops: float | None = Field(None, gt=0, description="Dense BF16 peak when it differs from FP16 (else same).")
    fp16_accumulate_tflops: float | None = Field(
        None, gt=0, description="Dense FP16 tensor peak with FP16 accumulate, where it exceeds fp16_tflops (GeForce: twice the FP32-accumulate rate).")
    fp8_tflops: float | None = Field(None, gt=0, description="Dense FP8 peak, if supported.")
    int8_tops: float | None = Field(None, gt=0, description="Dense INT8 peak in TOPS, if supported.")
    fp4_tflops: float | None = Field(None, gt=0, description="Dense FP4 peak, if supported.")
    tensor_cores: bool = Field(description="Matrix units (NVIDIA tensor cores, AMD matrix cores, Apple neural accelerators in the GPU).")
    unified_memory: bool = Field(False, description="CPU and GPU share one memory pool.")
    gpu_memory_fraction: float = Field(
        1.0, gt=0, le=1, description="Share of memory the GPU may use by default (macOS wires about 2/3 to 3/4)."
    )
    nvlink_generation: int | None = Field(None, ge=1, description="NVLink generation, if the device has NVLink.")
    thunderbolt_generation: int | None = Field(
        None, ge=3, le=5, description="Thunderbolt generation of the machine's ports (Apple Silicon): 5 carries RDMA (macOS 26.2+).")
    nvlink_bandwidth_gb_s: float | None = Field(None, gt=0, description="Total NVLink bandwidth per device, GB/s (both directions).")
    pcie_generation: int | None = Field(None, ge=3, le=6, description="PCIe generation of the host link.")
    pcie_lanes: int | None = Field(None, ge=1, le=16, description="PCIe lanes of the host link.")
    power_w: float | None = Field(None, gt=0, description="Board power (TDP/TGP) in watts; whole machine for Apple Silicon.")
    price: Price | None = Field(None, description="An optional price with its date and source.")
    compute_capability: str | None = Field(
        None, pattern=r"^\d{1,2}\.\d$", description="NVIDIA CUDA compute capability (8.0 A100, 8.9 Ada, 9.0 Hopper...): what kernels an engine can use."
    )
    gfx_target: str | None = Field(None, pattern=r"^gfx[0-9a-f]{3,4}$", description="AMD GPU architecture (gfx90a, gfx942, gfx1100): what ROCm supports.")
    cuda_reported_gib: float | None = Field(
        None, gt=0, description="Total memory the driver reports to CUDA/ROCm (torch.cuda.mem_get_info), measured; engines size from it."
    )
    cuda_reported_source: str | None = Field(None, description="Where cuda_reported_gib was seen.")
    nvml_name: str | None = Field(None, description="NVIDIA: the name the driver reports (nvidia-smi, NVML), from which GPU Feature "
                                  "Discovery makes the node label nvidia.com/gpu.product.")
    nvml_name_source: str | None = Field(None, description="Where nvml_name was seen (or why it is inferred).")
    ecc_reserved: bool = Field(False, description="GDDR memory whose ECC, on by default, takes a sixteenth (datacenter GDDR cards).")
    speed_class: str | None = Field(
        None, description="Speed-model class when it differs from the one derived from kind, vendor and bandwidth."
    )
    source: str = Field(min_length=8, description="Where the figures come from.")
    notes: str | None = Field(None, description="Anything unusual.")

    @model_validator(mode="after")
    def _check(self) -> "HardwareSpec":
        if self.unified_memory != (self.kind in ("apple-silicon", "soc")):
            raise ValueError("unified_memory must be true exactly for apple-silicon and soc devices")
        if (self.nvlink_generation is None) != (self.nvlink_bandwidth_gb_s is None):
            raise ValueError("nvlink_generation and nvlink_bandwidth_gb_s go together")
        if (self.cuda_reported_gib is None) != (self.cuda_reported_source is None):
            raise ValueError("cuda_reported_gib needs its cuda_reported_source")
        if self.compute_capability is not None and self.vendor != "nvidia":
            raise ValueError("compute_capability is an NVIDIA figure")
        if self.gfx_target is not None and self.vendor != "amd":
            raise ValueError("gfx_target is an AMD figure")
        return self

    @property
    def calibration_class(self) -> str:
        """Speed-model class: speed_class if set, else apple-silicon / soc, or <vendor>-hbm /
        <vendor>-gddr for discrete GPUs (memory bandwidth of 1,500 GB/s or more means stacked memory)."""
        if self.speed_class:
            return self.speed_class
        if self.kind != "gpu":
            return self.kind
        return f"{self.vendor}-{'hbm' if self.memory_bandwidth_gb_s >= 1500 else 'gddr'}"

    @property
    def capability(self) -> float | None:
        """Compute capability as a number (8.9), or None."""
        return float(self.compute_capability) if self.compute_capability else None

    @property
    def bf16(self) -> float:
        return self.bf16_tflops or self.fp16_tflops
