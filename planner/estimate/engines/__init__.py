"""Each serving engine's own memory accounting behind one interface (base.EngineMemory)."""

from __future__ import annotations

from planner.estimate.engines.base import (
    EngineMemory,
    EngineSettings,
    KVCapacity,
    KVLayout,
)
from planner.estimate.engines.generic import GenericMemory
from planner.estimate.engines.llamacpp import LlamaCppMemory
from planner.estimate.engines.mlx import MlxMemory
from planner.estimate.engines.sglang import SglangMemory
from planner.estimate.engines.vllm import VllmMemory
from planner.schemas.engine import EngineProfile

__all__ = ["EngineMemory", "EngineSettings", "KVCapacity", "KVLayout", "build_engine_memory"]


def build_engine_memory(profile: EngineProfile | None, version: str | None = None,
                        enforce_eager: bool = False) -> EngineMemory:
    """The memory model of a serving engine at a version (its profile's by default); the
    engine-neutral accounting without one."""
    if profile is None:
        return GenericMemory()
    version = version or profile.version
    model = profile.memory.model
    if model == "vllm":
        return VllmMemory(version, enforce_eager=enforce_eager)
    if model == "sglang":
        return SglangMemory(version)
    if model == "llama.cpp":
        return LlamaCppMemory(version, profile.memory)
    if model == "mlx":
        return MlxMemory(profile.id, version, profile.memory)
    raise ValueError(f"{profile.name} is a training engine; serving memory has no model for it")
