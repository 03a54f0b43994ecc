"""How a model's tensors and layers divide across ranks and stages (Megatron-LM / vLLM conventions).

Projections split across tensor-parallel ranks; KV projections replicate once tp exceeds the KV
heads; MLA down-projections, norms, biases and routers are replicated; the embedding and lm_head
are vocabulary-parallel. Pipeline stages own contiguous layers; the first holds the embedding, the
last the final norm and lm_head (both hold the matrix when the embeddings are tied).
"""

from __future__ import annotations

from planner.estimate.attention import estimate_kv_heads_per_rank
from planner.estimate.parameters import TensorCount
from planner.schemas.model import ModelSpec


def estimate_shard_fraction(tensor: TensorCount, model: ModelSpec, tensor_parallel_size: int) -> float:
    """Share of a tensor one tensor-parallel rank stores."""
    t = tensor_parallel_size
    if t == 1 or not tensor.is_matrix or tensor.component == "router" or tensor.kind in ("attn_q_a", "attn_kv_a"):
        return 1.0
    if tensor.kind in ("attn_k", "attn_v"):
        return estimate_kv_heads_per_rank(model, t) / model.num_key_value_heads
    return 1.0 / t


def is_on_stage(tensor: TensorCount, model: ModelSpec, layers: range, *, first: bool, last: bool) -> bool:
    """True when a stage holding `layers` (first and/or last of its pipeline) stores `tensor`."""
    if tensor.layer is not None:
        return tensor.layer in layers
    if tensor.kind == "token_embd":
        return first or (last and model.tie_word_embeddings)
    return last  # final norm, lm_head and its bias


def split_layers(num_layers: int, pipeline_parallel_size: int) -> list[range]:
    """Contiguous layer ranges per stage; the remainder goes to the stages before the last, which
    also carries the lm_head (vLLM get_pp_indices)."""
    if pipeline_parallel_size > num_layers:
        raise ValueError(f"pipeline_parallel_size {pipeline_parallel_size} exceeds the {num_layers} layers")
    counts = [num_layers // pipeline_parallel_size] * pipeline_parallel_size
    for i in range(2, num_layers % pipeline_parallel_size + 2):
        counts[-i] += 1
    out, start = [], 0
    for count in counts:
        out.append(range(start, start + count))
        start += count
    return out


def split_layers_first_last(num_layers: int, pipeline_parallel_size: int) -> list[range]:
    """Megatron-LM's uneven split: equal middle stages, the remainder on the first and last
    (--decoder-first/last-pipeline-num-layers; the middle layers must divide by the middle stages,
    megatron/core/transformer/transformer_config.py)."""
    p = pipeline_parallel_size
    if p > num_layers:
        raise ValueError(f"pipeline_parallel_size {p} exceeds the {num_layers} layers")
    base, extra = divmod(num_layers, p)
    if p == 1 or extra == 0:
        counts = [base] * p
    elif p == 2:
        counts = [base + extra - extra // 2, base + extra // 2]
    else:
        counts = [base + extra - extra // 2] + [base] * (p - 2) + [base + extra // 2]
    out, start = [], 0
    for count in counts:
        out.append(range(start, start + count))
        start += count
    return out


def check_layer_split(num_layers: int, split: tuple[int, ...]) -> str | None:
    """Why a list of layers per stage cannot be a pipeline of this model, or None."""
    if any(n < 1 for n in split):
        return f"every stage needs a layer: {list(split)}"
    if sum(split) != num_layers:
        return f"the stages hold {sum(split)} layers, the model has {num_layers}"
    return None


def ranges_of(split: tuple[int, ...]) -> list[range]:
    """Contiguous layer ranges from counts per stage."""
    out, start = [], 0
    for count in split:
        out.append(range(start, start + count))
        start += count
    return out
