"""Host-memory offload candidates (llama.cpp): a machine whose GPUs cannot hold the model keeps
the routed experts of its first layers (`--n-cpu-moe`) or its first layers whole (`-ngl` below
all, the output layer then with them) in the machine's RAM (estimate/host.py).

An offload replica takes every device of one machine, so one launch alone uses that machine's
host memory. The least offload that fits is the fastest (every byte moved to the host is read
at the host's bandwidth instead of the GPU's), so each machine gets that one candidate: experts
first for an MoE model (attention and the KV cache stay on the GPU), then whole layers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.candidates.classes import Budgets, UnitType
from planner.candidates.fill import fill_layers
from planner.estimate.engines import EngineSettings
from planner.estimate.host import (
    HostMachine,
    build_host_machine,
    check_host_figures,
    estimate_pcie_gb_s,
)
from planner.estimate.performance import HostWork
from planner.estimate.stage import DeviceMemory, StageSizer
from planner.schemas.inventory import Node
from planner.units import to_gb


@dataclass(frozen=True)
class HostPlacement:
    """What one replica keeps in its machine's host memory."""

    machine: HostMachine
    layers: int  # the first layers run on the CPU (llama.cpp -ngl = the rest)
    expert_layers: int  # the routed experts of the first layers stay in host memory (--n-cpu-moe)
    head: bool  # the output layer runs on the CPU (llama.cpp does so whenever a layer does)
    weights_bytes: float
    kv_cache_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes

    @property
    def capacity_bytes(self) -> float:
        return self.machine.capacity_bytes


class HostSizer:
    """The StageSizer of GPU stages whose machine's host holds some of their weights: the routed
    experts of `expert_layers` and (with `head`) the output layer leave the GPUs' weights and the
    seed's O on them."""

    def __init__(self, base: StageSizer, expert_layers: range, head: bool) -> None:
        self.base, self.expert_layers, self.head = base, expert_layers, head
        self.model, self.engine, self.context = base.model, base.engine, base.context
        self._experts = build_expert_prefix(base)

    def layout(self, tp: int, settings: EngineSettings, pipeline_stages: int = 1):
        return self.base.layout(tp, settings, pipeline_stages)

    def kv_bytes(self, layers: range, **kwargs) -> float:
        return self.base.kv_bytes(layers, **kwargs)

    def _moved(self, layers: range, last: bool) -> float:
        a, b = max(layers.start, self.expert_layers.start), min(layers.stop, self.expert_layers.stop)
        experts = self._experts[b] - self._experts[a] if b > a else 0.0
        return experts + (self.base.outer_weight_bytes(1, first=False, last=True) if last and self.head else 0.0)

    def need_bytes(self, layers: range, *, first: bool, last: bool, tp: int, users: int, settings: EngineSettings,
                   pipeline_stages: int = 1) -> float:
        need = self.base.need_bytes(layers, first=first, last=last, tp=tp, users=users, settings=settings,
                                    pipeline_stages=pipeline_stages)
        return need - (1 + self.base.overhead_factor) * self._moved(layers, last)

    def memory(self, layers: range, *, first: bool, last: bool, tp: int, users: int, settings: EngineSettings,
               pipeline_stages: int = 1, stage: int = 0) -> DeviceMemory:
        m = self.base.memory(layers, first=first, last=last, tp=tp, users=users, settings=settings,
                             pipeline_stages=pipeline_stages, stage=stage)
        moved = self._moved(layers, last)
        return replace(m, weights_bytes=m.weights_bytes - moved, overhead_bytes=m.overhead_bytes - self.base.overhead_factor * moved)


def build_expert_prefix(sizer: StageSizer) -> list[float]:
    """Prefix sums over layers of the routed experts' bytes (one device holds them whole), computed
    once per sizer."""
    memo = sizer.__dict__.get("_expert_prefix")
    if memo is not None:
        return memo
    per_layer = [0.0] * sizer.model.num_layers
    for item in sizer.weights.tensors:
        if item.tensor.layer is not None and item.tensor.component == "experts":
            per_layer[item.tensor.layer] += item.bytes
    out = [0.0]
    for value in per_layer:
        out.append(out[-1] + value)
    sizer.__dict__["_expert_prefix"] = out
    return out


def estimate_host_placement(sizer: StageSizer, machine: HostMachine, layers: int, expert_layers: int, users: int,
                            settings: EngineSettings) -> HostPlacement:
    """The host's share: the token embedding (llama.cpp keeps it there always), the CPU's layers
    with their KV cache, the output layer when those exist, and the routed experts of the first
    `expert_layers` layers beyond them."""
    experts = build_expert_prefix(sizer)
    cpu = range(0, layers)
    weights = (sizer.embedding_bytes() if sizer.embedding_on_host else 0.0) + sizer.layer_weight_bytes(cpu)
    if layers:
        weights += sizer.head_bytes()
        if not sizer.embedding_on_host and sizer.model.tie_word_embeddings:
            weights += sizer.embedding_bytes()
    weights += experts[max(expert_layers, layers)] - experts[layers]
    kv = sizer.kv_bytes(cpu, tp=1, users=users, settings=settings) if layers else 0.0
    return HostPlacement(machine, layers, expert_layers, layers > 0, weights, kv)


def build_host_work(machine: HostMachine, placement: HostPlacement, unit: UnitType, calibration, *, first: bool,
                    last: bool) -> HostWork:
    """What one GPU stage of an offload replica leaves to the host, for the speed model."""
    return HostWork(machine.device, calibration, estimate_pcie_gb_s(unit.device_class.spec),
                    range(0, placement.layers) if first else range(0), range(0, placement.expert_layers),
                    placement.head and last)


def find_least_offload(sizer: StageSizer, budgets: Budgets, units: list[UnitType], users: int) -> tuple[int, int] | str:
    """(CPU layers, expert layers) of the least offload with which `units` hold the rest for
    `users`: for an MoE model the fewest layers whose experts go to the host, and only when all of
    them do not suffice, the fewest whole layers besides; for a dense model the fewest whole layers.
    More offload never needs more GPU memory, so binary searches find them."""
    total = sizer.model.num_layers
    moe = sizer.model.moe is not None

    def fits(layers: int, experts: int) -> bool:
        host = HostSizer(sizer, range(0, experts), head=layers > 0)
        return isinstance(fill_layers(host, budgets, units, users, None, first_layer=layers), list)

    if fits(0, 0):
        return "the GPUs hold the model: nothing to offload"
    if moe and fits(0, total):
        low, high = 1, total
        while low < high:
            middle = (low + high) // 2
            if fits(0, middle):
                high = middle
            else:
                low = middle + 1
        return 0, low
    most = total - len(units)  # every GPU keeps a layer
    experts = total if moe else 0
    if most < 1 or not fits(most, experts):
        return f"even {most} layers in host memory leave the GPUs too little room"
    low, high = 1, most
    while low < high:
        middle = (low + high) // 2
        if fits(middle, experts):
            high = middle
        else:
            low = middle + 1
    return low, experts


def check_host_memory(placement: HostPlacement) -> str | None:
    """Why the host cannot hold its share, or None."""
    if placement.total_bytes > placement.capacity_bytes:
        return (f"host memory of {placement.machine.node} holds {to_gb(placement.capacity_bytes):,.1f} GB beside the system, "
                f"the offload needs {to_gb(placement.total_bytes):,.1f} GB")
    return None


def offload_machines(nodes: tuple[Node, ...]) -> list[tuple[Node, HostMachine | None, str | None]]:
    """One machine of each kind (devices and host figures alike), with its host or why it has none;
    unified-memory machines have no separate host memory to offload to."""
    seen: set[tuple] = set()
    out = []
    for node in nodes:
        if any(d.spec.unified_memory for d in node.devices):
            continue  # a Mac or SoC: its GPU already works from the host's memory
        key = (tuple((d.spec.id, d.usable_bytes) for d in node.devices), node.host_memory_bytes,
               node.host_memory_bandwidth_gb_s, node.host_cpu_cores)
        if key in seen:
            continue
        seen.add(key)
        out.append((node, build_host_machine(node), check_host_figures(node)))
    return out
