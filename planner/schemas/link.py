"""A kind of connection between devices: inside one machine or between machines."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LinkSpec(BaseModel):
    """Bandwidth and latency of one link type (per direction, per device or per port)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="Name used in inventories (pcie-4, nvlink-4, ethernet-10g...).")
    name: str = Field(description="Display name.")
    scope: Literal["intra-node", "network"] = Field(description="Inside one machine, or between machines.")
    bandwidth_gb_s: float = Field(gt=0, description="Usable bandwidth per direction in GB/s (10^9 bytes/s).")
    latency_us: float = Field(gt=0, description="One-way latency of a small message in microseconds.")
    tensor_parallel_ok: bool = Field(
        False, description="Fast enough that tensor-parallel all-reduces across it are sensible."
    )
    source: str = Field(min_length=8, description="Where the figures come from.")
    notes: str | None = Field(None, description="Anything unusual.")
