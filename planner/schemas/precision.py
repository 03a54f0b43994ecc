"""Number formats for weights and the KV cache, and a precision mix across model components."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Tensor kinds a precision rule can name. "ffn_down" covers dense, expert and shared-expert down
# projections, as llama.cpp's rules do.
TensorKind = Literal[
    "token_embd", "lm_head", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_a", "attn_q_b",
    "attn_kv_a", "attn_kv_b", "ffn_gate", "ffn_up", "ffn_down", "ffn_gate_inp",
]
# What an engine must implement to run a format: its profile lists these (planner/catalog/engines/).
FormatFamily = Literal["checkpoint", "float", "fp8", "int8", "int4", "nf4", "mxfp4", "nvfp4", "gguf", "mlx"]
Component = Literal["embedding", "attention", "dense_mlp", "router", "experts", "shared_experts", "norms", "lm_head"]
COMPONENTS: tuple[Component, ...] = (
    "embedding", "attention", "dense_mlp", "router", "experts", "shared_experts", "norms", "lm_head",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class TensorRule(_Frozen):
    """A per-tensor exception inside a mixed format (llama.cpp's Q4_K_M and friends)."""

    tensor: TensorKind | None = Field(None, description="Which tensors the rule applies to (any when unset).")
    component: Component | None = Field(None, description="Which component the rule applies to (any when unset).")
    format: str = Field(description="Format id those tensors are stored in.")
    layers: str = Field(
        "all",
        description="Which layers: all, use_more_bits, first:N (first N layers) or fraction:D (layer < n/D).",
    )
    min_gqa: int | None = Field(None, description="Apply only when heads / kv_heads is at least this.")
    num_experts: int | None = Field(None, description="Apply only to MoE models with exactly this many experts.")


class PrecisionFormat(_Frozen):
    """One storage format with its exact bits per weight, scales included."""

    id: str = Field(description="Name used on the command line (e.g. int4, q4_k_m, nf4).")
    family: FormatFamily = Field(description="The kind of kernel an engine needs to run it (engine profiles list families).")
    description: str = Field(description="One line: what the format is.")
    source: str = Field(description="Where the layout and its overhead come from.")
    element_bits: float | None = Field(None, gt=0, description="Bits of one stored element before scales.")
    group_size: int | None = Field(None, gt=0, description="Elements sharing one scale (and zero point).")
    scale_bits: float = Field(0, ge=0, description="Bits of the per-group scale.")
    zero_bits: float = Field(0, ge=0, description="Bits of the per-group zero point (asymmetric formats).")
    second_group_size: int | None = Field(
        None, gt=0, description="Groups sharing one second-level scale (double quantisation)."
    )
    second_scale_bits: float = Field(0, ge=0, description="Bits of the second-level scale.")
    block_size: int | None = Field(None, gt=0, description="Elements per block for block formats (GGUF).")
    block_bytes: int | None = Field(None, gt=0, description="Bytes per block for block formats (GGUF).")
    vector_bits: float = Field(
        16, gt=0, description="Bits for 1-D tensors (norms, biases) and routers, which stay unquantised."
    )
    base: str | None = Field(None, description="For a mixed format, the format of tensors no rule names.")
    rules: tuple[TensorRule, ...] = Field((), description="Per-tensor exceptions, first match wins.")
    row_multiple: int | None = Field(
        None, gt=0, description="Rows must be a multiple of this (k-quants: 256) or the fallback is used."
    )
    fallback: str | None = Field(None, description="Format used when a row is not a multiple of row_multiple.")
    kv_cache: bool = Field(False, description="Usable as a KV-cache dtype.")
    kv_group_over_head: bool = Field(
        False, description="As a KV dtype, one scale and zero per token and head (group = head_dim)."
    )
    aliases: tuple[str, ...] = Field((), description="Other names accepted for this format.")
    keep_16bit: tuple[Component, ...] = Field(
        (), description="Components real checkpoints of this format leave in 16 bits unless overridden."
    )

    @model_validator(mode="after")
    def _check_layout(self) -> "PrecisionFormat":
        kinds = sum(x is not None for x in (self.element_bits, self.block_bytes, self.base))
        if kinds != 1:
            raise ValueError("give exactly one of element_bits, block_bytes (with block_size) or base")
        if (self.block_bytes is None) != (self.block_size is None):
            raise ValueError("block_bytes and block_size go together")
        return self

    @property
    def is_mix(self) -> bool:
        return self.base is not None

    def bits_per_weight(self, head_dim: int | None = None) -> float:
        """Bits per stored element, scales and zero points included; mixes report their base."""
        if self.block_bytes is not None and self.block_size is not None:
            return 8.0 * self.block_bytes / self.block_size
        if self.element_bits is None:
            raise ValueError(f"{self.id} is a mix; ask the weight estimator for its real size")
        group = head_dim if (self.kv_group_over_head and head_dim) else self.group_size
        bits = self.element_bits
        if group:
            bits += (self.scale_bits + self.zero_bits) / group
            if self.second_group_size:
                bits += self.second_scale_bits / (group * self.second_group_size)
        return bits


class PrecisionMix(_Frozen):
    """Formats for each model component plus the KV cache; unset components use `weights`."""

    weights: PrecisionFormat = Field(description="Default format for weight matrices.")
    embedding: PrecisionFormat | None = Field(None, description="Override for the token embedding.")
    lm_head: PrecisionFormat | None = Field(None, description="Override for the output head.")
    attention: PrecisionFormat | None = Field(None, description="Override for attention projections.")
    dense_mlp: PrecisionFormat | None = Field(None, description="Override for dense MLPs.")
    experts: PrecisionFormat | None = Field(None, description="Override for routed experts.")
    shared_experts: PrecisionFormat | None = Field(None, description="Override for shared experts.")
    kv_cache_dtype: PrecisionFormat = Field(description="Format of the KV cache.")
    formats: dict[str, PrecisionFormat] = Field(
        default_factory=dict, description="Every format a mix rule may refer to, by id."
    )

    def for_component(self, component: Component) -> PrecisionFormat:
        """The format a component's matrices are stored in."""
        override = getattr(self, component, None) if component in (
            "embedding", "lm_head", "attention", "dense_mlp", "experts", "shared_experts"
        ) else None
        if override is not None:
            return override
        if component in self.weights.keep_16bit and "bf16" in self.formats:
            return self.formats["bf16"]
        return self.weights

    def describe(self) -> dict[str, str]:
        """Format id per component, for reports."""
        out = {"weights": self.weights.id}
        out.update({c: self.for_component(c).id for c in COMPONENTS if c not in ("router", "norms")})
        out["kv_cache"] = self.kv_cache_dtype.id
        return out
