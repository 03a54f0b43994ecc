"""What an engine lets the model use on one device: its capacity. One convention everywhere: the
capacity is what the engine's allocator may fill, and the runtime reserve (CUDA context, NCCL and
cuBLAS workspaces) is part of what a stage needs, never taken off the capacity.

This is the engine-neutral accounting (no --engine) and training's; each serving engine's own
capacity is in estimate/engines/. GPUs: a share of the memory the driver reports (the card's
memory less what the driver keeps), less memory held elsewhere (the start-up log in vLLM issue
#10517: 23.58 x 0.9 - 17.06 - 0.35 = 3.81 GiB). Unified-memory machines (llama.cpp or MLX on
macOS): the GPU's wired limit less what the inventory reserves.
"""

from __future__ import annotations

from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Device
from planner.schemas.serving import DRIVER_RESERVED_BYTES
from planner.units import GiB


def estimate_reported_bytes(spec: HardwareSpec, memory_bytes: int) -> float:
    """The total the driver reports for a GPU (torch.cuda.mem_get_info): measured in the catalog
    (`cuda_reported_gib`), else the memory less the driver's 0.42 GiB, after ECC's sixteenth on
    the GDDR cards that have it on by default (an A10 shows 22.09 GiB of 24, an L4 22.05)."""
    if spec.cuda_reported_gib is not None:
        return spec.cuda_reported_gib * GiB
    usable = memory_bytes * (15 / 16 if spec.ecc_reserved else 1.0)
    return float(usable - DRIVER_RESERVED_BYTES)


def estimate_engine_capacity_bytes(device: Device, gpu_memory_utilization: float) -> float:
    """Bytes a serving engine may fill on `device`: weights, activations, KV cache and its reserve."""
    if device.spec.unified_memory:
        return float(device.usable_bytes)
    held_elsewhere = device.memory_bytes - device.usable_bytes  # reserved_gb, used_gb, usable fraction
    return estimate_reported_bytes(device.spec, device.memory_bytes) * gpu_memory_utilization - held_elsewhere


def estimate_training_capacity_bytes(device: Device) -> float:
    """Bytes a device lends to training (no engine share): what the driver reports less memory
    held elsewhere on a GPU, the usable memory on a unified-memory machine."""
    if device.spec.unified_memory:
        return float(device.usable_bytes)
    return estimate_reported_bytes(device.spec, device.memory_bytes) - (device.memory_bytes - device.usable_bytes)
