"""Group a cluster's devices into classes of interchangeable devices, so the solver sees a count
instead of one variable per device (identical machines collapse into one class)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimate.engine import estimate_engine_budget_bytes
from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Cluster
from planner.schemas.link import LinkSpec
from planner.schemas.model import ModelSpec
from planner.schemas.serving import ServeRequest


@dataclass(frozen=True)
class DeviceClass:
    """Identical devices (same type and budget) in identical machines."""

    index: int
    key: str  # e.g. "hgx-1..hgx-2: 8x h100-sxm"
    spec: HardwareSpec
    nodes: tuple[str, ...]
    devices_per_node: int
    budget_bytes: float
    link: LinkSpec  # inside a machine
    device_ids: tuple[tuple[str, ...], ...]  # per node, in order

    @property
    def devices(self) -> int:
        return len(self.nodes) * self.devices_per_node


@dataclass(frozen=True)
class UnitType:
    """A tensor-parallel group of `tp` devices of one class (one pipeline stage)."""

    device_class: DeviceClass
    tp: int

    @property
    def key(self) -> str:
        return f"{self.device_class.key} tp{self.tp}"

    @property
    def available(self) -> int:
        return len(self.device_class.nodes) * (self.device_class.devices_per_node // self.tp)


def build_device_classes(cluster: Cluster, request: ServeRequest) -> list[DeviceClass]:
    """Classes of interchangeable devices, in inventory order."""
    signatures: dict[tuple, list] = {}
    for node in cluster.nodes:
        groups: dict[tuple, list[str]] = {}
        for device in node.devices:
            budget = estimate_engine_budget_bytes(device, request)
            groups.setdefault((device.spec.id, round(budget)), []).append(device.id)
        signature = (node.interconnect.id, tuple((k, len(v)) for k, v in groups.items()))
        signatures.setdefault(signature, []).append((node, groups))
    classes: list[DeviceClass] = []
    for signature, members in signatures.items():
        first_node, first_groups = members[0]
        for key in first_groups:
            spec = next(d.spec for d in first_node.devices if d.spec.id == key[0])
            names = tuple(node.name for node, _ in members)
            label = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
            classes.append(DeviceClass(
                index=len(classes), key=f"{label}: {len(first_groups[key])}x {spec.id}", spec=spec, nodes=names,
                devices_per_node=len(first_groups[key]), budget_bytes=float(key[1]), link=first_node.interconnect,
                device_ids=tuple(tuple(groups[key]) for _, groups in members),
            ))
    return classes


def tp_options(device_class: DeviceClass, model: ModelSpec) -> list[int]:
    """Tensor-parallel sizes a class supports: powers of two that fit in one machine, divide the
    attention heads, pair with the KV heads, and (for several machines) divide the machine's count
    so identical machines pack exactly."""
    out = []
    t = 1
    n = device_class.devices_per_node
    while t <= n:
        ok_heads = model.num_attention_heads % t == 0
        kv = model.num_key_value_heads
        ok_kv = model.mla is not None or kv % t == 0 or t % kv == 0
        ok_pack = len(device_class.nodes) == 1 or n % t == 0
        ok_link = t == 1 or device_class.link.tensor_parallel_ok
        if ok_heads and ok_kv and ok_pack and ok_link:
            out.append(t)
        t *= 2
    return out
