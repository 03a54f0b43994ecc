"""Exact parameter counts by tensor, layer and component, from config fields alone.

Counted the way Hugging Face transformers builds the model: every parameter tensor once, tied
embeddings once, buffers (rotary tables, DeepSeek's e_score_correction_bias) not at all. Pinned to
exact counts from transformers 5.24 on the meta device (tests/test_parameters.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.schemas.model import ModelSpec
from planner.schemas.precision import COMPONENTS, Component, TensorKind


@dataclass(frozen=True)
class TensorCount:
    """One kind of tensor in one layer (all experts together for expert tensors)."""

    component: Component
    kind: TensorKind | None  # None for 1-D tensors (norms, biases, sinks), which stay unquantised
    params: int
    row_size: int  # elements per row as stored (ggml ne[0]: the input features of a matrix)
    layer: int | None  # None for embedding, lm_head and the final norm

    @property
    def is_matrix(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True)
class ParameterBreakdown:
    """Total and active parameters per component."""

    total: dict[Component, int]
    active: dict[Component, int]
    mtp_parameters: int  # multi-token-prediction modules stored in the checkpoint, not served

    @property
    def total_parameters(self) -> int:
        return sum(self.total.values())

    @property
    def active_parameters(self) -> int:
        return sum(self.active.values())


def _linear(component: Component, kind: TensorKind, n_in: int, n_out: int, layer: int | None, bias: bool, copies: int = 1) -> list[TensorCount]:
    out = [TensorCount(component, kind, copies * n_in * n_out, n_in, layer)]
    if bias:
        out.append(TensorCount(component, None, copies * n_out, n_out, layer))
    return out


def _attention(model: ModelSpec, i: int) -> list[TensorCount]:
    h, heads, kv = model.hidden_size, model.num_attention_heads, model.num_key_value_heads
    mla = model.mla
    out: list[TensorCount] = []
    if mla is not None:
        # DeepSeek-V2/V3 MLA (modeling_deepseek_v3.py): q through an optional low-rank pair, k/v
        # through one compressed latent plus a shared rotary key.
        q_head = mla.qk_nope_head_dim + mla.qk_rope_head_dim
        if mla.q_lora_rank:
            out += _linear("attention", "attn_q_a", h, mla.q_lora_rank, i, model.qkv_bias)
            out.append(TensorCount("norms", None, mla.q_lora_rank, mla.q_lora_rank, i))
            out += _linear("attention", "attn_q_b", mla.q_lora_rank, heads * q_head, i, False)
        else:
            out += _linear("attention", "attn_q", h, heads * q_head, i, False)
        out += _linear("attention", "attn_kv_a", h, mla.kv_lora_rank + mla.qk_rope_head_dim, i, model.qkv_bias)
        out.append(TensorCount("norms", None, mla.kv_lora_rank, mla.kv_lora_rank, i))
        out += _linear("attention", "attn_kv_b", mla.kv_lora_rank, heads * (mla.qk_nope_head_dim + mla.v_head_dim), i, False)
        out += _linear("attention", "attn_output", heads * mla.v_head_dim, h, i, model.o_bias)
        return out
    d = model.head_dim
    out += _linear("attention", "attn_q", h, heads * d, i, model.qkv_bias)
    out += _linear("attention", "attn_k", h, kv * d, i, model.qkv_bias)
    out += _linear("attention", "attn_v", h, kv * d, i, model.qkv_bias)
    out += _linear("attention", "attn_output", heads * d, h, i, model.o_bias)
    if model.qk_norm:
        out.append(TensorCount("norms", None, 2 * d, d, i))
    if model.attention_sinks:
        out.append(TensorCount("attention", None, heads, heads, i))
    return out


def _mlp(component: Component, h: int, width: int, i: int, bias: bool, gated: bool, copies: int = 1) -> list[TensorCount]:
    out: list[TensorCount] = []
    if gated:
        out += _linear(component, "ffn_gate", h, width, i, bias, copies)
    out += _linear(component, "ffn_up", h, width, i, bias, copies)
    out += _linear(component, "ffn_down", width, h, i, bias, copies)
    return out


def _feed_forward(model: ModelSpec, i: int) -> list[TensorCount]:
    h = model.hidden_size
    moe = model.moe
    if moe is None or not model.is_moe_layer(i):
        return _mlp("dense_mlp", h, model.intermediate_size, i, model.mlp_bias, model.mlp_gated)
    out = _linear("router", "ffn_gate_inp", h, moe.num_experts, i, moe.router_bias)
    if moe.router_score_bias:
        # Stored in the checkpoint and read for every token; transformers keeps it as a buffer.
        out.append(TensorCount("router", None, moe.num_experts, moe.num_experts, i))
    out += _mlp("experts", h, moe.expert_intermediate_size, i, moe.expert_bias, model.mlp_gated, moe.num_experts)
    if moe.shared_expert_intermediate_size:
        out += _mlp("shared_experts", h, moe.shared_expert_intermediate_size, i, False, model.mlp_gated)
        if moe.shared_expert_gate:
            out += _linear("shared_experts", "ffn_gate_inp", h, 1, i, False)
    return out


def _norm_params(model: ModelSpec) -> int:
    return model.hidden_size * (2 if model.norm_bias else 1)


def estimate_layer_tensors(model: ModelSpec, i: int) -> list[TensorCount]:
    """Every parameter tensor of transformer block `i`."""
    out = _attention(model, i) + _feed_forward(model, i)
    out += [TensorCount("norms", None, _norm_params(model), model.hidden_size, i) for _ in range(model.norms_per_layer)]
    return out


def estimate_outer_tensors(model: ModelSpec) -> list[TensorCount]:
    """Tensors outside the blocks: token embedding, final norm and (untied) lm_head."""
    h, v = model.hidden_size, model.vocab_size
    out = [TensorCount("embedding", "token_embd", v * h, h, None)]
    out.append(TensorCount("norms", None, _norm_params(model), h, None))
    if not model.tie_word_embeddings:
        out.append(TensorCount("lm_head", "lm_head", v * h, h, None))
    if model.lm_head_bias:
        out.append(TensorCount("lm_head", None, v, v, None))
    return out


def estimate_model_tensors(model: ModelSpec) -> list[TensorCount]:
    """All parameter tensors of the served model (multi-token-prediction modules excluded)."""
    out = estimate_outer_tensors(model)
    for i in range(model.num_layers):
        out += estimate_layer_tensors(model, i)
    return out


def active_fraction(model: ModelSpec, component: Component) -> float:
    """Share of a component's parameters one token touches (top-k of the routed experts)."""
    if component == "experts" and model.moe is not None:
        return model.moe.experts_per_token / model.moe.num_experts
    return 1.0


def estimate_mtp_parameters(model: ModelSpec) -> int:
    """DeepSeek-V3 multi-token-prediction module: one more block, an eh_proj (2h -> h), two norms,
    and its own embedding and head copies (DeepSeek-V3 report s2.2; checkpoint layer 61)."""
    if not model.mtp_layers:
        return 0
    h, v = model.hidden_size, model.vocab_size
    block = sum(t.params for t in estimate_layer_tensors(model, model.num_layers - 1))
    return model.mtp_layers * (block + 2 * h * h + 3 * h + 2 * v * h)


def estimate_parameters(model: ModelSpec) -> ParameterBreakdown:
    """Total and active parameters per component."""
    total: dict[Component, int] = {c: 0 for c in COMPONENTS}
    for tensor in estimate_model_tensors(model):
        total[tensor.component] += tensor.params
    active = {c: round(n * active_fraction(model, c)) for c, n in total.items()}
    return ParameterBreakdown(total=total, active=active, mtp_parameters=estimate_mtp_parameters(model))
