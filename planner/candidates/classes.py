"""Group a cluster's devices into classes of interchangeable devices, so the solver sees a count
instead of one variable per device (identical machines collapse into one class)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from planner.estimate.engines import EngineMemory, EngineSettings
from planner.estimate.parallelism import check_tensor_parallel_size
from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Cluster, Device
from planner.schemas.link import LinkSpec
from planner.schemas.model import ModelSpec
from planner.schemas.serving import ServeRequest


@dataclass(frozen=True)
class DeviceClass:
    """Identical devices (same figures and capacity) in identical machines."""

    index: int
    key: str  # e.g. "hgx-1..hgx-2: 8x h100-sxm"
    spec: HardwareSpec
    nodes: tuple[str, ...]
    devices_per_node: int
    capacity_bytes: float  # what the engine may fill on each device (one device per stage, one stage)
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
    def spans_machines(self) -> bool:
        """A tensor-parallel group over whole machines (exo and MLX across Macs)."""
        return self.tp > self.device_class.devices_per_node

    @property
    def machines(self) -> int:
        """Machines one group of this unit takes whole (1 when it fits in one)."""
        return self.tp // self.device_class.devices_per_node if self.spans_machines else 1

    @property
    def available(self) -> int:
        if self.spans_machines:
            return len(self.device_class.nodes) // self.machines
        return len(self.device_class.nodes) * (self.device_class.devices_per_node // self.tp)


@dataclass(frozen=True)
class Budget:
    """What one launch runs with on a device of a class, and what its engine may fill there."""

    settings: EngineSettings
    capacity_bytes: float


class Budgets:
    """Each class's engine settings and capacity for a tensor-parallel size and a number of
    stages (SGLang's memory share depends on both), computed once."""

    def __init__(self, engine: EngineMemory, request: ServeRequest, model: ModelSpec, cluster: Cluster) -> None:
        self.engine, self.request, self.model = engine, request, model
        self.devices = {d.id: d for d in cluster.devices}
        self._memo: dict[tuple[int, int, int], Budget] = {}
        self._replicas: dict[tuple, tuple[EngineSettings, list[float]]] = {}
        self._interned: dict[EngineSettings, EngineSettings] = {}

    def _intern(self, settings: EngineSettings) -> EngineSettings:
        """One object per distinct settings, so the sizer's caches compare by identity."""
        return self._interned.setdefault(settings, settings)

    def of(self, device_class: DeviceClass, tp: int = 1, pp: int = 1) -> Budget:
        key = (device_class.index, tp, pp)
        if key not in self._memo:
            device = self.devices[device_class.device_ids[0][0]]
            settings = self._intern(self.engine.settings(device, self.request, model=self.model, tp=tp, pp=pp))
            self._memo[key] = Budget(settings, self.engine.capacity_bytes(device, settings))
        return self._memo[key]

    def replica(self, units: list[UnitType]) -> tuple[EngineSettings, list[float]]:
        """One launch's settings (its first device's defaults; every worker runs the same flags,
        with the smallest memory share any of them needs) and each stage's capacity under them."""
        key = tuple((u.device_class.index, u.tp) for u in units)
        if key not in self._replicas:
            pp = len(units)
            budgets = [self.of(u.device_class, u.tp, pp) for u in units]
            settings = budgets[0].settings
            shares = [b.settings.memory_fraction for b in budgets if b.settings.memory_fraction is not None]
            if shares and min(shares) != settings.memory_fraction:
                settings = self._intern(replace(settings, memory_fraction=min(shares)))
            capacities = [self.engine.capacity_bytes(self.devices[u.device_class.device_ids[0][0]], settings) for u in units]
            self._replicas[key] = (settings, capacities)
        return self._replicas[key]


def serving_capacity(engine: EngineMemory, request: ServeRequest, model: ModelSpec) -> Callable[[Device], float]:
    """What a serving engine may fill on a device under its default settings there."""
    return lambda device: engine.capacity_bytes(device, engine.settings(device, request, model=model))


def build_device_classes(cluster: Cluster, capacity_of: Callable[[Device], float]) -> list[DeviceClass]:
    """Classes of interchangeable devices, in inventory order. Devices are alike when their whole
    specification, capacity and price agree, not merely their names."""
    signatures: dict[tuple, list] = {}
    for node in cluster.nodes:
        groups: dict[tuple, list[str]] = {}
        for device in node.devices:
            capacity = capacity_of(device)
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


def tp_options(device_class: DeviceClass, model: ModelSpec, *, across_machines: bool = False) -> list[int]:
    """Tensor-parallel sizes a class supports: powers of two that fit in one machine, are legal for
    the model (estimate/parallelism.py), and (for several machines) divide the machine's count so
    identical machines pack exactly, over a link fit for tensor parallelism. With
    `across_machines` (an engine that shards tensors over machines, on links fit for it), also
    groups of whole machines: the machine's devices times a power of two of its machines."""
    out = []
    t = 1
    n = device_class.devices_per_node
    while t <= n:
        ok_pack = len(device_class.nodes) == 1 or n % t == 0
        ok_link = t == 1 or device_class.link.tensor_parallel_ok
        if ok_pack and ok_link and check_tensor_parallel_size(model, t) is None:
            out.append(t)
        t *= 2
    machines = 2
    while across_machines and machines <= len(device_class.nodes):
        if check_tensor_parallel_size(model, n * machines) is None:
            out.append(n * machines)
        machines *= 2
    return out
