"""Activation memory: the peak of one inference forward pass, and training activations per
Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", Table 2)."""

from __future__ import annotations


from planner.schemas.model import ModelSpec
from planner.schemas.workload import Recompute

ACTIVATION_BYTES = 2  # 16-bit activations
LOGIT_BYTES = 4  # logits are upcast to fp32 for sampling and for the loss


def estimate_block_peak_elements(model: ModelSpec, layer: int, tensor_parallel_size: int = 1) -> float:
    """Elements per token live at the peak of block `layer` during inference.

    MLP: residual + normed input + output (3h) plus the fused gate/up output (2i) and the product
    that feeds down_proj (i), the latter two split across ranks. This reproduces vLLM's profile run
    on Llama-3.1-8B: (3h + 3i) x 2 B = 110,592 B per token, 2.06 GiB for 20,000 tokens against the
    2.10 GiB measured (peak 17.06 GiB - weights 14.96 GiB, vLLM issue #10517).
    """
    t = tensor_parallel_size
    h = model.hidden_size
    if model.mla is not None:
        mla = model.mla
        q = model.num_attention_heads * (mla.qk_nope_head_dim + mla.qk_rope_head_dim)
        kv = model.num_attention_heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        attention = 3 * h + (2 * q + kv + model.num_attention_heads * mla.v_head_dim) / t
    else:
        q = model.num_attention_heads * model.head_dim
        kv = model.num_key_value_heads * model.head_dim
        attention = 3 * h + (2 * q + 2 * kv) / t
    if model.is_moe_layer(layer) and model.moe is not None:
        moe = model.moe
        # Fused MoE kernels keep top_k copies of each token: gate/up (2w), product (w), down output (h).
        routed = moe.experts_per_token * (3 * moe.expert_intermediate_size / t + h)
        shared = 3 * moe.shared_expert_intermediate_size / t
        feed_forward = 3 * h + max(routed, shared)
    else:
        feed_forward = 3 * h + 3 * model.intermediate_size / t
    return max(attention, feed_forward)


def estimate_prefill_activation_bytes(
    model: ModelSpec, chunk_tokens: int, tensor_parallel_size: int = 1, layers: range | None = None
) -> float:
    """Peak activation bytes while a chunk of `chunk_tokens` passes through `layers` (one block at a time)."""
    layers = layers if layers is not None else range(model.num_layers)
    if len(layers) == 0:
        return 0.0
    peak = max(estimate_block_peak_elements(model, i, tensor_parallel_size) for i in layers)
    return chunk_tokens * peak * ACTIVATION_BYTES


def estimate_logits_bytes(model: ModelSpec, sequences: int) -> float:
    """fp32 logits for the last token of each sequence (what the sampler holds)."""
    return sequences * model.vocab_size * LOGIT_BYTES


def estimate_training_layer_activation_bytes(
    model: ModelSpec,
    *,
    sequence_length: int,
    micro_batch_size: int,
    tensor_parallel_size: int = 1,
    sequence_parallel: bool = False,
    recompute: Recompute = "none",
) -> float:
    """Activation bytes one transformer layer stores for the backward pass (Korthikanti et al. Table 2).

    none: sbh(34 + 5as/h); tensor parallel: sbh(10 + 24/t + 5as/(ht)); with sequence parallel:
    sbh(34 + 5as/h)/t; selective recompute drops the 5as/h attention term; full recompute keeps
    only the layer input, 2sbh (divided by t with sequence parallel).
    """
    s, b, h, a, t = sequence_length, micro_batch_size, model.hidden_size, model.num_attention_heads, tensor_parallel_size
    sbh = s * b * h
    attention_term = 0.0 if recompute == "selective" else 5 * a * s / h
    if recompute == "full":
        return 2 * sbh / (t if sequence_parallel else 1)
    if t == 1:
        return sbh * (34 + attention_term)
    if sequence_parallel:
        return sbh * (34 + attention_term) / t
    return sbh * (10 + 24 / t + attention_term / t)


def estimate_training_logits_bytes(model: ModelSpec, *, sequence_length: int, micro_batch_size: int, tensor_parallel_size: int = 1) -> float:
    """The loss keeps fp32 logits: 4sbv/t bytes (Korthikanti et al. s4.3)."""
    return LOGIT_BYTES * sequence_length * micro_batch_size * model.vocab_size / tensor_parallel_size


def estimate_in_flight_microbatches(pipeline_parallel_size: int, stage: int) -> int:
    """Micro-batches a stage holds activations for under 1F1B: p - stage (the first holds p)."""
    return max(1, pipeline_parallel_size - stage)
