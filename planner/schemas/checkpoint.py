"""What is on disk: every logical weight tensor of a checkpoint with its real size."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from planner.schemas.precision import Component, TensorKind


class CheckpointTensor(BaseModel):
    """One logical weight (quantisation scales, zero points and packing folded in)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(description="Tensor name in the checkpoint.")
    component: Component = Field(description="Model component it belongs to.")
    kind: TensorKind | None = Field(None, description="Tensor kind for matrices; None for 1-D tensors.")
    layer: int | None = Field(None, description="Transformer block, or None outside the blocks.")
    params: int = Field(ge=0, description="Logical parameters (unpacked).")
    bytes: int = Field(ge=0, description="Bytes on disk, scales and zero points included.")
    row_size: int = Field(ge=1, description="Input features (elements per row).")
    dtype: str = Field(description="Storage type (BF16, F8_E4M3, Q4_K, gptq-int4, mxfp4...).")


class CheckpointInfo(BaseModel):
    """A checkpoint's tensors and what it says about itself."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    format: str = Field(description="safetensors or gguf.")
    quant_method: str | None = Field(None, description="Quantisation detected (gptq, awq, compressed-tensors, bitsandbytes, fp8, mxfp4, or a GGUF file type).")
    source: str = Field(description="Path read.")
    tensors: tuple[CheckpointTensor, ...] = Field(description="Logical weights, in file order.")
    notes: tuple[str, ...] = Field((), description="Where the checkpoint and the config disagree, and what was used.")
