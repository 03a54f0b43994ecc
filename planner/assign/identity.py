"""Identities a plan records: digests of the model and the inventory it was made for, so a saved
plan can tell whether it still describes what the user has."""

from __future__ import annotations

import hashlib
import json

from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.plan import InventoryRef, ModelRef, PrecisionOut
from planner.schemas.precision import PrecisionMix


def _digest(data: object) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def build_model_ref(model: ModelSpec) -> ModelRef:
    """The model's name, origin and the digest of everything its accounting reads."""
    canonical = model.model_dump(mode="json", exclude={"name", "source", "origin"})
    return ModelRef(name=model.name, kind=model.origin, path=None if model.origin == "catalog" else model.source,
                    digest=_digest(canonical))


def build_inventory_ref(cluster: Cluster) -> InventoryRef:
    """The inventory's name, path and the digest of the resolved cluster (devices, figures, links)."""
    canonical = cluster.model_dump(mode="json", exclude={"source"})
    return InventoryRef(name=cluster.name, path=cluster.source, digest=_digest(canonical), nodes=len(cluster.nodes),
                        devices=len(cluster.devices))


def build_precision_out(mix: PrecisionMix) -> PrecisionOut:
    """The precision mix by format id."""
    described = mix.describe()
    return PrecisionOut(weights=mix.weights.id, kv_cache=mix.kv_cache_dtype.id,
                        components={k: v for k, v in described.items() if k not in ("weights", "kv_cache")})
