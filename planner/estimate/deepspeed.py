"""DeepSpeed's own model-state estimators, reproduced as its documentation states them.

DeepSpeed docs, "Memory Requirements" (docs/code-docs/source/memory.rst): per GPU,
ZeRO-2 without offload 4P + 16P/G, with optimizer offload 2P; ZeRO-3 without offload
4L + 18P/G, with optimizer offload 4L + 2P/G, with parameter and optimizer offload 4L
(P parameters, L the largest layer's parameters, G GPUs in all). CPU memory uses an additional
buffer factor of 1.5. The current DeepSpeed code changed ZeRO-2 without offload to 2P + 18P/G;
the documented figures (2,851M parameters on 8 GPUs: 15.93 / 5.31 GiB) follow the formula above.
"""

from __future__ import annotations

from dataclasses import dataclass

ADDITIONAL_BUFFER_FACTOR = 1.5


@dataclass(frozen=True)
class ModelStatesMemory:
    """Bytes per GPU and per node's CPU for the model states (parameters, gradients, optimizer)."""

    gpu_bytes: float
    cpu_bytes: float


def estimate_deepspeed_zero2(
    total_params: int, *, gpus_per_node: int = 1, nodes: int = 1, offload_optimizer: bool = False
) -> ModelStatesMemory:
    """DeepSpeed's estimate_zero2_model_states_mem_needs, documented form."""
    gpus = gpus_per_node * nodes
    if offload_optimizer:
        return ModelStatesMemory(2 * total_params, total_params * max(4 * gpus, 16) * ADDITIONAL_BUFFER_FACTOR)
    return ModelStatesMemory(
        4 * total_params + int(16 * total_params / gpus),
        total_params * 4 * gpus_per_node * ADDITIONAL_BUFFER_FACTOR,
    )


def estimate_deepspeed_zero3(
    total_params: int,
    largest_layer_params: int,
    *,
    gpus_per_node: int = 1,
    nodes: int = 1,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    zero_init: bool = True,
) -> ModelStatesMemory:
    """DeepSpeed's estimate_zero3_model_states_mem_needs (deepspeed/runtime/zero/stage3.py)."""
    gpus = gpus_per_node * nodes
    gpus_factor = 1 / nodes
    largest = 4 * largest_layer_params  # 16-bit parameters gathered plus 16-bit gradients
    f = ADDITIONAL_BUFFER_FACTOR
    if offload_optimizer and offload_params:
        cpu = total_params * (18 * gpus_factor if zero_init else max(4 * gpus_per_node, 18 * gpus_factor)) * f
        return ModelStatesMemory(largest, cpu)
    if offload_optimizer:
        cpu = total_params * (16 * gpus_factor if zero_init else max(4 * gpus_per_node, 16 * gpus_factor)) * f
        return ModelStatesMemory(largest + int(2 * total_params / gpus), cpu)
    cpu = (largest_layer_params if zero_init else total_params) * 4 * gpus_per_node * f
    return ModelStatesMemory(largest + int(18 * total_params / gpus), cpu)
