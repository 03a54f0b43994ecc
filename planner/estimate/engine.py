"""What a serving engine lets the model use on one device.

GPUs (vLLM): the engine takes gpu_memory_utilization of the memory CUDA reports (the card's
memory less what the driver keeps), minus non-torch memory; memory other programs use counts
against it. Unified-memory machines (llama.cpp/MLX on macOS): the GPU's wired limit less what
the inventory reserves. Checked against the start-up log in vLLM issue #10517.
"""

from __future__ import annotations

from planner.schemas.inventory import Device
from planner.schemas.serving import DRIVER_RESERVED_BYTES, ServeRequest


def estimate_engine_budget_bytes(device: Device, request: ServeRequest) -> float:
    """Bytes the engine may fill with weights, activations and KV cache on `device`."""
    if device.spec.unified_memory:
        return device.usable_bytes - request.runtime_reserve_bytes
    visible = device.memory_bytes - DRIVER_RESERVED_BYTES
    held_elsewhere = device.memory_bytes - device.usable_bytes  # reserved_gb, used_gb, usable fraction
    return visible * request.gpu_memory_utilization - held_elsewhere - request.runtime_reserve_bytes


def estimate_training_capacity_bytes(device: Device) -> float:
    """Bytes a device lends to training (no engine share): what CUDA reports less memory held
    elsewhere on a GPU, the usable memory on a unified-memory machine. The runtime reserve is
    part of the need (overhead_bytes), not taken off here."""
    if device.spec.unified_memory:
        return float(device.usable_bytes)
    return device.memory_bytes - DRIVER_RESERVED_BYTES - (device.memory_bytes - device.usable_bytes)
