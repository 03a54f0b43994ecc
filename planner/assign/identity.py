"""Identities a plan records: digests of the model and the inventory it was made for, so a saved
plan can tell whether it still describes what the user has."""

from __future__ import annotations

import hashlib
import json

from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.plan import InventoryRef, MachineOut, ModelRef, PrecisionOut
from planner.schemas.precision import PrecisionMix


def _digest(data: object) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def build_model_digest(model: ModelSpec) -> str:
    """The digest of everything the model's accounting reads (not its name or where it came from)."""
    return _digest(model.model_dump(mode="json", exclude={"name", "source", "origin"}))


def build_model_ref(model: ModelSpec, hf_repo: str | None = None) -> ModelRef:
    """The model's name, origin, repository id and digest."""
    return ModelRef(name=model.name, kind=model.origin, path=None if model.origin == "catalog" else model.source,
                    hf_repo=hf_repo, digest=build_model_digest(model))


def build_inventory_digest(cluster: Cluster) -> str:
    """The digest of the resolved cluster: devices, their figures and budgets, links. Addresses
    and ports say where machines are, not what they hold, and leave it alone."""
    data = cluster.model_dump(mode="json", exclude={"source": True, "nodes": {"__all__": {"address", "ports"}}})
    for node in data["nodes"]:  # host figures added later count only when given, so older digests stay
        for key in ("host_memory_bandwidth_gb_s", "host_cpu_cores"):
            if node.get(key) is None:
                node.pop(key, None)
    return _digest(data)


def build_inventory_ref(cluster: Cluster) -> InventoryRef:
    """The inventory's name, path and the digest of the resolved cluster (devices, figures, links)."""
    machines = [MachineOut(name=n.name, address=n.address, api_port=n.ports.api, rendezvous_port=n.ports.rendezvous,
                           rpc_port=n.ports.rpc) for n in cluster.nodes]
    return InventoryRef(name=cluster.name, path=cluster.source, digest=build_inventory_digest(cluster), nodes=len(cluster.nodes),
                        devices=len(cluster.devices), machines=machines)


def build_precision_out(mix: PrecisionMix) -> PrecisionOut:
    """The precision mix by format id."""
    described = mix.describe()
    return PrecisionOut(weights=mix.weights.id, kv_cache=mix.kv_cache_dtype.id,
                        components={k: v for k, v in described.items() if k not in ("weights", "kv_cache")})
