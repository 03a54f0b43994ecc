"""The shape of a built-in model catalog file (planner/catalog/models/<id>.yaml)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelCatalogEntry(BaseModel):
    """One model: who publishes it, where its config comes from, and the config itself."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="Catalog id, the file's name.")
    name: str = Field(description="Display name.")
    family: str = Field(description="Model family, for grouping in lists.")
    hf_repo: str = Field(description="Hugging Face repository id.")
    aliases: tuple[str, ...] = Field((), description="Other names that find this entry.")
    published_parameters: str | None = Field(None, description="Parameter count as the publisher states it.")
    source: str = Field(min_length=8, description="Where the config values were read.")
    notes: str | None = Field(None, description="Anything unusual about the entry.")
    config: dict[str, Any] = Field(description="The Hugging Face config.json contents.")
