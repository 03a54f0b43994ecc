"""What memory and speed depend on in a transformer, captured from config fields."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.schemas.checkpoint import CheckpointInfo

AttentionLayerType = Literal["full", "sliding", "chunked"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class MoESpec(_Frozen):
    """Mixture-of-experts feed-forward layers."""

    num_experts: int = Field(gt=0, description="Routed experts per MoE layer.")
    experts_per_token: int = Field(gt=0, description="Routed experts each token uses (top-k).")
    expert_intermediate_size: int = Field(gt=0, description="Hidden width of one routed expert's MLP.")
    num_shared_experts: int = Field(0, ge=0, description="Experts every token uses (DeepSeek style).")
    shared_expert_intermediate_size: int = Field(
        0, ge=0, description="Total hidden width of the shared-expert MLP (0 when none)."
    )
    shared_expert_gate: bool = Field(False, description="A scalar sigmoid gate on the shared expert (Qwen2-MoE).")
    first_dense_layers: int = Field(0, ge=0, description="Leading layers with a dense MLP (first_k_dense_replace).")
    sparse_step: int = Field(1, ge=1, description="Every n-th layer is MoE (decoder_sparse_step / moe_layer_freq).")
    sparse_step_offset: int = Field(
        0, ge=0, description="Layer i is MoE when (i + offset) % sparse_step == 0 (Qwen uses offset 1)."
    )
    dense_layer_indices: tuple[int, ...] = Field((), description="Layers forced dense (mlp_only_layers).")
    router_bias: bool = Field(False, description="The router linear layer has a bias.")
    expert_bias: bool = Field(False, description="Expert projections have biases (gpt-oss).")
    router_score_bias: bool = Field(
        False, description="A per-expert score-correction bias (DeepSeek-V3 noaux_tc e_score_correction_bias)."
    )

    @model_validator(mode="after")
    def _check_top_k(self) -> "MoESpec":
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"experts_per_token ({self.experts_per_token}) exceeds num_experts ({self.num_experts})"
            )
        return self


class MLASpec(_Frozen):
    """DeepSeek multi-head latent attention: the cache holds one compressed latent per token."""

    q_lora_rank: int | None = Field(None, description="Rank of the query down-projection; null means a full q_proj.")
    kv_lora_rank: int = Field(gt=0, description="Width of the compressed KV latent.")
    qk_rope_head_dim: int = Field(gt=0, description="Rotary part of each query/key head.")
    qk_nope_head_dim: int = Field(gt=0, description="Non-rotary part of each query/key head.")
    v_head_dim: int = Field(gt=0, description="Width of each value head.")


class ShippedPrecision(_Frozen):
    """How the published checkpoint stores the weights (its quantization_config), as format ids."""

    weights: str = Field(description="Format of the matrices no override names.")
    overrides: dict[str, str] = Field(default_factory=dict, description="Component -> format, e.g. experts -> mxfp4.")
    method: str = Field(description="The quant_method the config names.")


class ModelSpec(_Frozen):
    """A decoder-only transformer, with every field that changes a tensor shape or the cache."""

    name: str = Field(description="Display name or catalog id.")
    source: str | None = Field(None, description="Where the configuration came from.")
    origin: Literal["catalog", "config", "checkpoint"] = Field(
        "config", description="How the model was named: a catalog entry, a config.json, or checkpoint headers."
    )
    architecture: str = Field("unknown", description="The config's model_type.")
    num_layers: int = Field(gt=0, description="Transformer blocks (num_hidden_layers).")
    hidden_size: int = Field(gt=0, description="Width of the residual stream.")
    intermediate_size: int = Field(ge=0, description="Hidden width of a dense MLP.")
    num_attention_heads: int = Field(gt=0, description="Query heads.")
    num_key_value_heads: int = Field(gt=0, description="Key/value heads (equal to query heads for MHA, 1 for MQA).")
    head_dim: int = Field(gt=0, description="Width of one attention head (not always hidden/heads).")
    vocab_size: int = Field(gt=0, description="Rows of the embedding matrix.")
    tie_word_embeddings: bool = Field(False, description="lm_head shares the embedding matrix.")
    qkv_bias: bool = Field(False, description="q/k/v projections have biases (Qwen2, gpt-oss).")
    o_bias: bool = Field(False, description="The attention output projection has a bias.")
    qk_norm: bool = Field(False, description="Per-head RMSNorm on queries and keys (Qwen3, Gemma 3).")
    attention_sinks: bool = Field(False, description="One learned sink logit per head and layer (gpt-oss).")
    mlp_bias: bool = Field(False, description="Dense MLP projections have biases.")
    mlp_gated: bool = Field(True, description="Gated MLP (gate, up, down) rather than (up, down).")
    norms_per_layer: int = Field(2, ge=0, description="Hidden-size norms in each block (2; Gemma 2/3 use 4).")
    norm_bias: bool = Field(False, description="Norms are LayerNorm with a bias (RMSNorm has none).")
    lm_head_bias: bool = Field(False, description="The output head has a bias (PhiMoE).")
    moe: MoESpec | None = Field(None, description="Mixture-of-experts settings, if any.")
    mla: MLASpec | None = Field(None, description="Multi-head latent attention settings, if any.")
    layer_types: tuple[AttentionLayerType, ...] = Field(
        (), description="Attention type of each layer; empty means every layer is full attention."
    )
    sliding_window: int | None = Field(None, gt=0, description="Tokens a sliding-window layer attends to.")
    attention_chunk_size: int | None = Field(
        None, gt=0, description="Tokens per chunk of a chunked local-attention layer (Llama 4 attention_chunk_size)."
    )
    max_context: int = Field(gt=0, description="Longest context the model supports (max_position_embeddings).")
    mtp_layers: int = Field(0, ge=0, description="Multi-token-prediction modules in the checkpoint (not served).")
    dtype: str = Field("bf16", description="Precision the checkpoint is published in.")
    shipped: ShippedPrecision | None = Field(None, description="The published checkpoint's quantisation, when it has one.")
    checkpoint: CheckpointInfo | None = Field(None, description="Tensors read from a checkpoint on disk, if any.")

    @model_validator(mode="after")
    def _check_shapes(self) -> "ModelSpec":
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.layer_types and len(self.layer_types) != self.num_layers:
            raise ValueError(
                f"layer_types lists {len(self.layer_types)} layers but num_layers is {self.num_layers}"
            )
        if "sliding" in self.layer_types and self.sliding_window is None:
            raise ValueError("layer_types has sliding layers but sliding_window is not set")
        if "chunked" in self.layer_types and self.attention_chunk_size is None:
            raise ValueError("layer_types has chunked-attention layers but attention_chunk_size is not set")
        if self.moe is None and self.intermediate_size == 0:
            raise ValueError("a dense model needs intermediate_size > 0")
        return self

    def layer_type(self, index: int) -> AttentionLayerType:
        """Attention type of layer `index`."""
        return self.layer_types[index] if self.layer_types else "full"

    def is_moe_layer(self, index: int) -> bool:
        """True when layer `index` has routed experts instead of a dense MLP."""
        moe = self.moe
        if moe is None or index < moe.first_dense_layers or index in moe.dense_layer_indices:
            return False
        return (index + moe.sparse_step_offset) % moe.sparse_step == 0
