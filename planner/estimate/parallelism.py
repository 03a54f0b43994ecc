"""The legality rules of splitting a model, one function each, used by the candidates, `plan
memory` and the verifier alike.

Tensor parallelism (Megatron-LM column/row-parallel layers, as vLLM and SGLang implement them):
every sharded dimension must divide by the size (vLLM's `divide()` asserts it): query heads, the
dense MLP width and each expert's width. KV heads either divide by the size or are replicated so
each rank holds one (vLLM replicates when tp > num_key_value_heads, which needs tp to be a
multiple of them). MLA's latent is not split, so its KV heads impose nothing.
"""

from __future__ import annotations

from planner.schemas.model import ModelSpec


def check_tensor_parallel_size(model: ModelSpec, size: int) -> str | None:
    """Why `size` ranks cannot share every layer of `model`, or None when they can."""
    if size < 1:
        return f"tensor-parallel size {size} is not a positive integer"
    if size == 1:
        return None
    if model.num_attention_heads % size:
        return f"{model.num_attention_heads} attention heads do not divide across {size} tensor-parallel ranks"
    kv = model.num_key_value_heads
    if model.mla is None and kv % size and size % kv:
        return f"{kv} KV heads and tensor-parallel size {size}: one must divide the other"
    if model.intermediate_size and model.intermediate_size % size:
        return f"the MLP width {model.intermediate_size} does not divide across {size} tensor-parallel ranks"
    if model.moe is not None and model.moe.expert_intermediate_size % size:
        return (f"the expert width {model.moe.expert_intermediate_size} does not divide across {size} "
                f"tensor-parallel ranks")
    return None


def check_pipeline_parallel_size(model: ModelSpec, size: int) -> str | None:
    """Why `size` pipeline stages cannot hold `model`, or None: every stage needs a layer."""
    if size < 1:
        return f"pipeline-parallel size {size} is not a positive integer"
    if size > model.num_layers:
        return f"{size} pipeline stages for {model.num_layers} layers"
    return None
