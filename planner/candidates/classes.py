"""Group a cluster's devices into classes of interchangeable devices, so the solver sees a count
instead of one variable per device (identical machines collapse into one class)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimate.engine import estimate_engine_capacity_bytes
from planner.estimate.parallelism import check_tensor_parallel_size
from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Cluster
from planner.schemas.link import LinkSpec
from planner.schemas.model import ModelSpec


@dataclass(frozen=True)
class DeviceClass:
    """Identical devices (same figures and capacity) in identical machines."""

    index: int
    key: str  # e.g. "hgx-1..hgx-2: 8x h100-sxm"
    spec: HardwareSpec
    nodes: tuple[str, ...]
    devices_per_node: int
    capacity_bytes: float  # what the engine may fill on each device
    link: LinkSpec  # inside a machine
    device_ids: tuple[tuple[str, ...], ...]  # per node, in order
    price_usd: float | None  # per device

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


def build_device_classes(cluster: Cluster, gpu_memory_utilization: float) -> list[DeviceClass]:
    """Classes of interchangeable devices, in inventory order. Devices are alike when their whole
    specification, capacity and price agree, not merely their names."""
    signatures: dict[tuple, list] = {}
    for node in cluster.nodes:
        groups: dict[tuple, list[str]] = {}
        for device in node.devices:
            capacity = estimate_engine_capacity_bytes(device, gpu_memory_utilization)
            groups.setdefault((device.spec, round(capacity), device.price_usd), []).append(device.id)
        signature = (node.interconnect.id, tuple((k, len(v)) for k, v in groups.items()))
        signatures.setdefault(signature, []).append((node, groups))
    classes: list[DeviceClass] = []
    for members in signatures.values():
        first_node, first_groups = members[0]
        for key in first_groups:
            spec, capacity, price = key
            names = tuple(node.name for node, _ in members)
            label = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
            classes.append(DeviceClass(
                index=len(classes), key=f"{label}: {len(first_groups[key])}x {spec.id}", spec=spec, nodes=names,
                devices_per_node=len(first_groups[key]), capacity_bytes=float(capacity), link=first_node.interconnect,
                device_ids=tuple(tuple(groups[key]) for _, groups in members), price_usd=price,
            ))
    return classes


def tp_options(device_class: DeviceClass, model: ModelSpec) -> list[int]:
    """Tensor-parallel sizes a class supports: powers of two that fit in one machine, are legal for
    the model (estimate/parallelism.py), and (for several machines) divide the machine's count so
    identical machines pack exactly, over a link fit for tensor parallelism."""
    out = []
    t = 1
    n = device_class.devices_per_node
    while t <= n:
        ok_pack = len(device_class.nodes) == 1 or n % t == 0
        ok_link = t == 1 or device_class.link.tensor_parallel_ok
        if ok_pack and ok_link and check_tensor_parallel_size(model, t) is None:
            out.append(t)
        t *= 2
    return out
