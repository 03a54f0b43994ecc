"""What an engine lets the model use on one device: its capacity. One convention everywhere: the
capacity is what the engine's allocator may fill, and the runtime reserve (CUDA context, NCCL and
cuBLAS workspaces) is part of what a stage needs, never taken off the capacity.

GPUs (vLLM): gpu_memory_utilization of the memory CUDA reports (the card's memory less what the
driver keeps), less memory held elsewhere; vLLM's KV cache is that share minus the profiled peak
and the non-torch memory (the start-up log in vLLM issue #10517: 23.58 x 0.9 - 17.06 - 0.35 =
3.81 GiB). Unified-memory machines (llama.cpp or MLX on macOS): the GPU's wired limit less what the
inventory reserves.
"""

from __future__ import annotations

from planner.schemas.inventory import Device
from planner.schemas.serving import DRIVER_RESERVED_BYTES


def estimate_engine_capacity_bytes(device: Device, gpu_memory_utilization: float) -> float:
    """Bytes a serving engine may fill on `device`: weights, activations, KV cache and its reserve."""
    if device.spec.unified_memory:
        return float(device.usable_bytes)
    visible = device.memory_bytes - DRIVER_RESERVED_BYTES
    held_elsewhere = device.memory_bytes - device.usable_bytes  # reserved_gb, used_gb, usable fraction
    return visible * gpu_memory_utilization - held_elsewhere


def estimate_training_capacity_bytes(device: Device) -> float:
    """Bytes a device lends to training (no engine share): what CUDA reports less memory held
    elsewhere on a GPU, the usable memory on a unified-memory machine."""
    if device.spec.unified_memory:
        return float(device.usable_bytes)
    return device.memory_bytes - DRIVER_RESERVED_BYTES - (device.memory_bytes - device.usable_bytes)
