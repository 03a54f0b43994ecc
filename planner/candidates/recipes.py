"""Replica recipes: an ordered chain of stages (unit type + contiguous layers) with a number of
users, its memory fit checked and its speed computed. The solver only chooses how many copies of
each recipe to run; every non-linear number is computed here."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field, replace

from planner.candidates.classes import (
    Budgets,
    DeviceClass,
    UnitType,
    build_device_classes,
    serving_capacity,
    tp_options,
)
from planner.candidates.engine_rules import check_units, even_counts, stages_per_machine
from planner.candidates.fill import Stage, build_stages, fill_layers
from planner.candidates.offload import (
    HostPlacement,
    HostSizer,
    build_host_work,
    check_host_memory,
    estimate_host_placement,
    find_least_offload,
    offload_machines,
)
from planner.candidates.packing import classes_to_pack
from planner.estimate.engine_support import check_mix_on_device
from planner.estimate.engines import EngineSettings, KVCapacity, build_engine_memory
from planner.estimate.host import HOST_CLASS
from planner.estimate.performance import StagePlan
from planner.estimate.serving import ReplicaSpeed, Workload, estimate_replica_speed
from planner.estimate.shards import split_layers
from planner.estimate.stage import StageSizer
from planner.estimate.weights import estimate_weight_bytes
from planner.schemas.engine import EngineProfile
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.objectives import is_at_least_as_good, objective_terms
from planner.schemas.precision import PrecisionMix
from planner.schemas.serving import ServeRequest
from planner.schemas.speed import SpeedCalibration
from planner.topology import Topology, build_topology

MAX_TYPES_PER_RECIPE = 3
MAX_COUNT_COMBINATIONS = 4000
SMALL_CLUSTER_DEVICES = 64  # up to this size every mix of device types is tried


class _Deadline(Exception):
    """The candidate search ran out of time."""


@dataclass(frozen=True)
class Recipe:
    """A replica layout with its users, memory and speed."""

    index: int
    stages: tuple[Stage, ...]
    users: int
    speed: ReplicaSpeed
    devices_by_class: tuple[tuple[int, int], ...]  # (class index, devices)
    price_usd: float | None
    settings: EngineSettings  # what its launch runs with
    capacity: KVCapacity  # its cache in the engine's own terms
    # Runs of consecutive stages placed in one machine: (class index, devices, stage indices). Its
    # speed assumes a hop inside a run stays in the machine and any other hop takes the slowest
    # route between the machines it may land on; the solver packs runs into machines whole.
    blocks: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
    host: HostPlacement | None = None  # what its machine's host memory holds (llama.cpp offload)

    @property
    def devices(self) -> int:
        return sum(n for _, n in self.devices_by_class)

    @property
    def tokens_per_s(self) -> float:
        return self.speed.decode_tokens_per_s

    @property
    def max_users(self) -> int:
        """Users the replica could hold at the requested context."""
        return self.capacity.max_users

    def term_value(self, name: str) -> float | None:
        """This replica's value of an objective term (planner/schemas/objectives.py)."""
        return {
            "total_tokens_per_s": self.tokens_per_s,
            "slowest_user_speed": self.speed.decode_tokens_per_s_per_user,
            "cost_usd": self.price_usd,
            "devices_used": float(self.devices),
        }[name]


@dataclass(frozen=True)
class Rejection:
    """A layout that was considered and why it cannot be used."""

    layout: str
    reason: str


@dataclass
class CandidateSet:
    """Everything the solver chooses from."""

    model: ModelSpec
    mix: PrecisionMix
    request: ServeRequest
    cluster: Cluster
    engine: EngineProfile
    classes: list[DeviceClass]
    units: list[UnitType]
    recipes: list[Recipe] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    user_values: list[int] = field(default_factory=list)
    stopped_early: bool = False  # the deadline cut the search short
    cut: list[str] = field(default_factory=list)  # what the deadline cut, in words


def _user_values(users: int, max_replicas: int, coarse: bool = False) -> list[int]:
    """Users per replica worth considering: every even split ceil/floor(U / R), and 1, coarse to
    fine: the splits into R = 1, 2, 4, 8, ... replicas first, so a search cut short by the time
    limit still spans every replica size. Coarse (for quick what-if checks): only those."""
    def split(step: object) -> list[int]:
        values: list[int] = []
        replicas = 1
        while replicas <= min(users, max_replicas):
            values += [math.ceil(users / replicas), users // replicas]
            replicas = replicas * 2 if step == "double" else replicas + 1
        return values

    first = sorted({v for v in [users, 1, *split("double")] if v >= 1}, reverse=True)
    if coarse:
        return first
    rest = sorted({v for v in split("one") if v >= 1} - set(first), reverse=True)
    return first + rest


def build_workload(request: ServeRequest, users: int, settings: EngineSettings) -> Workload:
    """What one replica of `users` users serves, with the forward-pass budget its launch runs with."""
    return Workload(users=users, prompt_tokens=request.prompt_tokens or max(1, request.context // 2),
                    output_tokens=request.output_tokens or max(1, request.context - (request.prompt_tokens or 0)),
                    batch_tokens=settings.batch_tokens)


def check_speed_targets(request: ServeRequest, speed: ReplicaSpeed) -> str | None:
    """Why a replica misses the per-user speed or time to first token asked for, or None."""
    if request.min_tokens_per_s and speed.decode_tokens_per_s_per_user < request.min_tokens_per_s:
        return (f"{speed.decode_tokens_per_s_per_user:,.1f} tokens/s per user under load, below the "
                f"{request.min_tokens_per_s:g} asked for")
    if request.max_ttft_s and speed.time_to_first_token_s > request.max_ttft_s:
        return (f"{speed.time_to_first_token_s:,.2f} s to the first token under load (queueing "
                f"{speed.queue_s:,.2f} s), above the {request.max_ttft_s:g} s asked for")
    return None


def is_speed_rejection(reason: str) -> bool:
    """True when a layout was rejected only for missing the speed targets (check_speed_targets)."""
    return reason.endswith(" asked for")


def is_decode_speed_rejection(reason: str) -> bool:
    """True when a layout was rejected for its per-user decode speed (--min-tokens-per-s)."""
    return is_speed_rejection(reason) and "tokens/s per user" in reason


def _speed_key(unit: UnitType, calibration: SpeedCalibration) -> float:
    return unit.tp * unit.device_class.spec.memory_bandwidth_gb_s * calibration.quantized_bandwidth_efficiency


class RecipeBuilder:
    """Enumerates recipes for a cluster, model and request."""

    def __init__(self, model: ModelSpec, mix: PrecisionMix, request: ServeRequest, cluster: Cluster,
                 calibrations: dict[str, SpeedCalibration], engine: EngineProfile, topology: Topology | None = None,
                 coarse: bool = False, deadline: float | None = None, replicas_elsewhere: bool = False) -> None:
        self.coarse, self.deadline, self.replicas_elsewhere = coarse, deadline, replicas_elsewhere
        self.model, self.mix, self.request, self.cluster, self.engine = model, mix, request, cluster, engine
        self.calibrations = calibrations
        self.topology = topology or build_topology(cluster)
        self.weights = estimate_weight_bytes(model, mix)
        version = getattr(getattr(request, "engine", None), "version", None)
        self.memory = build_engine_memory(engine, version, enforce_eager=request.enforce_eager)
        self.sizer = StageSizer(model, mix, self.weights, context=request.context, engine=self.memory,
                                overhead_factor=request.overhead_factor, runtime_reserve_bytes=request.runtime_reserve_bytes,
                                embedding_on_host=engine.layout.embedding_on_host)
        self.classes = build_device_classes(cluster, serving_capacity(self.memory, request, model))
        self.budgets = Budgets(self.memory, request, model, cluster)
        self.unsupported = {c.index: why for c in self.classes
                            if (why := check_mix_on_device(engine, model, mix, c.spec)) is not None}
        no_tp = engine.layout.tensor_parallel == "none"
        pinned_tp = request.tensor_parallel_size
        self.units = [u for c in self.classes if c.index not in self.unsupported
                      for t in tp_options(c, model, across_machines=self._tensor_parallel_across(c))
                      if (u := UnitType(c, t)).spans_machines or not (no_tp and t > 1)
                      if pinned_tp is None or t == pinned_tp]
        self.stages_pinned = request.pipeline_parallel_size or (len(request.layer_split) if request.layer_split else None)
        self._routes: dict[tuple, tuple[float, float, bool]] = {}
        self._node_of = {d.id: d.node for d in cluster.devices}
        self._speed_keys: dict[tuple[int, int], tuple[float, int, int]] = {}

    def _tensor_parallel_across(self, cls: DeviceClass) -> bool:
        """The engine shards tensors over machines, and every link between this class's machines
        is fit for it (RDMA over Thunderbolt 5, not Ethernet)."""
        if not self.engine.layout.tensor_parallel_across_machines or len(cls.nodes) < 2:
            return False
        nodes = set(cls.nodes)
        links = [x.link for x in self.cluster.links if x.a in nodes or x.b in nodes]
        return bool(links) and all(link.tensor_parallel_ok for link in links)

    def _check_time(self) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise _Deadline

    def calibration(self, unit: UnitType) -> SpeedCalibration:
        return self.calibrations[unit.device_class.spec.calibration_class]

    def _in_machine(self, a: DeviceClass) -> tuple[float, float]:
        """(bandwidth, latency) between two devices of `a` in one machine."""
        key = ("in", a.index)
        if key not in self._routes:
            src, dst = a.device_ids[0][0], a.device_ids[0][-1]
            route = self.topology.route(src, dst) if src != dst else None
            self._routes[key] = ((route.bandwidth_gb_s, route.latency_us) if route else
                                 (a.link.bandwidth_gb_s, a.link.latency_us)) + (False,)
        return self._routes[key][:2]

    def _between_machines(self, a: DeviceClass, b: DeviceClass) -> tuple[float, float, bool]:
        """The slowest route a hop from a device of `a` to one of `b` in another run may take:
        the narrowest bandwidth and the longest latency between any two of their machines
        (bandwidth over the paths from one machine to the rest; latency by a double sweep, both
        exact on the inventory's tree), and whether it may cross machines."""
        key = ("between", a.index, b.index)
        if key not in self._routes:
            ends = list(dict.fromkeys([ids[0] for ids in a.device_ids] + [ids[0] for ids in b.device_ids]))
            if len(ends) < 2:
                self._routes[key] = self._in_machine(a) + (False,)
            else:
                routes = [self.topology.route(ends[0], d) for d in ends[1:]]
                far = ends[1 + max(range(len(routes)), key=lambda i: (routes[i].latency_us, -i))]
                latency = max(self.topology.route(far, d).latency_us for d in ends if d != far)
                crosses = len({self._node_of[d] for d in ends}) > 1
                self._routes[key] = (min(r.bandwidth_gb_s for r in routes), latency, crosses)
        return self._routes[key]

    def _blocks(self, ordered: list[UnitType]) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
        """The runs of consecutive stages one machine holds: a run grows while the next stage is of
        the same class and still fits the machine; an engine that needs the same devices on every
        machine of a replica puts the same number of stages in each."""
        run = len(ordered)
        if self.engine.layout.same_devices_per_machine:
            run = stages_per_machine(ordered) or len(ordered)
        blocks: list[tuple[int, int, tuple[int, ...]]] = []
        for k, unit in enumerate(ordered):
            cls = unit.device_class
            if unit.spans_machines:  # one group over whole machines: a run per machine
                blocks += [(cls.index, cls.devices_per_node, (k,))] * unit.machines
                continue
            if blocks:
                c, n, ks = blocks[-1]
                if c == cls.index and n + unit.tp <= cls.devices_per_node and len(ks) < run and not ordered[ks[-1]].spans_machines:
                    blocks[-1] = (c, n + unit.tp, ks + (k,))
                    continue
            blocks.append((cls.index, unit.tp, (k,)))
        return tuple(blocks)

    def _ordered(self, units: list[UnitType]) -> list[UnitType]:
        """Fastest first (llama.cpp and exo give the first devices the most layers this way)."""
        keys = self._speed_keys
        for u in units:
            if (u.device_class.index, u.tp) not in keys:
                keys[(u.device_class.index, u.tp)] = (-_speed_key(u, self.calibration(u)), u.device_class.index, u.tp)
        return sorted(units, key=lambda u: keys[(u.device_class.index, u.tp)])

    def build_recipe(self, units: list[UnitType], users: int, index: int, counts: list[int] | None = None,
                     offload: HostPlacement | None = None) -> Recipe | str:
        """A recipe from units (any order; kept in order with `counts`) and users, or the reason it
        cannot be built; with `offload`, the host of the units' machine holds that share."""
        self._check_time()
        ordered = self._ordered(units) if counts is None else list(units)
        problem = check_units(self.engine, ordered, self.model.num_layers)
        if problem:
            return problem
        sizer = self.sizer
        if offload is not None:
            sizer = HostSizer(self.sizer, range(0, offload.expert_layers), offload.head)
            spans = fill_layers(sizer, self.budgets, ordered, users, None, first_layer=offload.layers)
            if isinstance(spans, str):
                return spans
            return self._finish_recipe(ordered, spans, users, index, sizer, offload)
        if counts is not None and self.engine.layout.pipeline == "even" and len(set(counts)) > 1:
            return f"{self.engine.name} splits layers evenly, not {counts}"
        counts = counts or even_counts(self.engine, len(ordered), self.model.num_layers)
        spans: list[tuple[int, int]] | str = "no stages"
        if counts is None and len(ordered) > 1 and len({(u.device_class.index, u.tp) for u in ordered}) == 1:
            # Identical stages: vLLM's balanced split leaves each the same room for the cache, so
            # capacity is the best any split gives; fill greedily only when it does not fit.
            spans = fill_layers(self.sizer, self.budgets, ordered, users,
                                [len(r) for r in split_layers(self.model.num_layers, len(ordered))])
        if isinstance(spans, str):
            spans = fill_layers(self.sizer, self.budgets, ordered, users, counts)
        if isinstance(spans, str):
            return spans
        return self._finish_recipe(ordered, spans, users, index, sizer, None)

    def _finish_recipe(self, ordered: list[UnitType], spans: list[tuple[int, int]], users: int, index: int,
                       sizer: StageSizer | HostSizer, offload: HostPlacement | None) -> Recipe | str:
        """The recipe of units laid over `spans`: its memory, cache, speed and targets checked."""
        plans = []
        blocks = self._blocks(ordered)
        run_of = {k: b for b, (_, _, ks) in enumerate(blocks) for k in ks}
        for k, (unit, (start, end)) in enumerate(zip(ordered, spans)):
            cls = unit.device_class
            if unit.spans_machines:
                tp_bw, tp_lat, _ = self._between_machines(cls, cls)
            else:
                tp_bw, tp_lat = self._in_machine(cls) if unit.tp > 1 else (0.0, 0.0)
            next_bw = next_lat = 0.0
            crosses = False
            if k + 1 < len(ordered):
                if run_of[k + 1] == run_of[k]:
                    next_bw, next_lat = self._in_machine(cls)
                else:
                    next_bw, next_lat, crosses = self._between_machines(cls, ordered[k + 1].device_class)
            host = None
            if offload is not None:
                host = build_host_work(offload.machine, offload, unit, self.calibrations[HOST_CLASS], first=k == 0,
                                       last=k == len(ordered) - 1)
            plans.append(StagePlan(cls.spec, range(start, end), unit.tp, self.calibration(unit), tp_bw, tp_lat, next_bw, next_lat,
                                   crosses, host))
        stages, settings, capacity = build_stages(sizer, self.budgets, ordered, spans, users)
        if capacity.max_users < users:
            return (f"{self.engine.name}'s cache holds {capacity.max_users} request(s) of {self.request.context:,} tokens "
                    f"on this layout, not {users}")
        if offload is not None:
            offload = estimate_host_placement(self.sizer, offload.machine, offload.layers, offload.expert_layers, users, settings)
            problem = check_host_memory(offload)
            if problem:
                return problem
        speed = estimate_replica_speed(self.model, self.mix, self.weights, plans, workload=build_workload(self.request, users, settings),
                                       scheduling=self.engine.speed)
        problem = check_speed_targets(self.request, speed)
        if problem:
            return problem
        by_class: dict[int, int] = {}
        for unit in ordered:
            by_class[unit.device_class.index] = by_class.get(unit.device_class.index, 0) + unit.tp
        prices = [unit.device_class.price_usd for unit in ordered]
        price = None if any(p is None for p in prices) else sum(p * u.tp for p, u in zip(prices, ordered))
        return Recipe(index, stages, users, speed, tuple(sorted(by_class.items())), price, settings, capacity, blocks, offload)

    def build(self) -> CandidateSet:
        """Every recipe worth considering, and every rejection with its reason; stops at the
        deadline with what it has (and says so)."""
        out = CandidateSet(self.model, self.mix, self.request, self.cluster, self.engine, self.classes, self.units)
        for index, why in self.unsupported.items():
            out.rejections.append(Rejection(self.classes[index].key, why))
        pinned_tp = self.request.tensor_parallel_size
        if not self.units and pinned_tp and pinned_tp > 1:
            why = (f"{self.engine.name} runs no tensor parallelism" if self.engine.layout.tensor_parallel == "none" else
                   f"no machine has {pinned_tp} identical devices on a link fit for tensor parallelism")
            out.rejections.append(Rejection(f"--tensor-parallel-size {pinned_tp}", why))
            return out
        if not self.units:
            if not self.unsupported:
                out.rejections.append(Rejection("any layout", "no device class supports a legal tensor-parallel size"))
            return out
        total_devices = sum(c.devices for c in self.classes)
        # A replica's users are an even split of everyone's over the replicas; with replicas on other
        # machines too (a purchase that mixes templates), over more replicas than these devices hold.
        out.user_values = _user_values(self.request.users, self.request.users if self.replicas_elsewhere else total_devices,
                                       self.coarse)
        replicas = self.request.data_parallel_size
        if replicas is not None:
            out.user_values = sorted({max(1, -(-self.request.users // replicas)), max(1, self.request.users // replicas)})
        seen: set[tuple] = set()
        minimal: dict[int, dict[int, int]] = {}  # users -> unit index -> fewest stages alone
        done = 0
        phase = "one device type per replica"
        try:
            pinned_offload = self.request.n_cpu_moe is not None or self.request.cpu_layers is not None
            if pinned_offload:
                if not self.engine.layout.host_offload:
                    out.rejections.append(Rejection("--n-cpu-moe / --cpu-layers", f"{self.engine.name} keeps every weight on its devices"))
                    return out
                for users in out.user_values:
                    self._offload(out, users, seen)
                out.recipes = without_dominated(out.recipes, self.request.objective, frozenset(classes_to_pack(out)))
                return out
            if not self.stages_pinned and self.request.tensor_parallel_size is None:
                baseline = self.memory_proportional_recipe(self.request.users)
                if isinstance(baseline, Recipe):
                    self._add(out, baseline, seen)  # the engines' default split is always a candidate
            for users in out.user_values:
                minimal[users] = {}
                for ui, unit in enumerate(self.units):
                    found = self._smallest_pipeline(unit, users)
                    if isinstance(found, Recipe):
                        minimal[users][ui] = len(found.stages)
                        self._add(out, found, seen)
                    else:
                        out.rejections.append(Rejection(f"{unit.key} for {users} user(s)", found))
                done += 1
            if self.engine.layout.host_offload:
                for users in out.user_values:
                    self._offload(out, users, seen)
            done, phase = 0, "pipelines mixing device types"
            for users in out.user_values:
                self._mixed(out, users, minimal[users], seen, total_devices)
                done += 1
        except _Deadline:
            out.stopped_early = True
            values = len(out.user_values)
            out.cut.append(f"{phase}: {values - done} of {values} users-per-replica values not tried "
                           f"(largest untried {out.user_values[done] if done < values else '-'})")
            if phase.startswith("one"):
                out.cut.append("pipelines mixing device types: not tried")
        out.recipes = without_dominated(out.recipes, self.request.objective, frozenset(classes_to_pack(out)))
        return out

    def _offload(self, out: CandidateSet, users: int, seen: set[tuple]) -> None:
        """The least host offload on each kind of machine whose GPUs cannot hold the model
        (candidates/offload.py), when the engine offloads."""
        class_of = {d: c for c in self.classes if c.index not in self.unsupported for ids in c.device_ids for d in ids}
        for node, machine, why in offload_machines(self.cluster.nodes):
            label = f"{node.name} with host offload for {users} user(s)"
            units = [UnitType(class_of[d.id], 1) for d in node.devices if d.id in class_of]
            if machine is None or not units:
                if machine is None and not self._fits_somewhere(units, users):
                    out.rejections.append(Rejection(label, why or "no device the engine runs"))
                continue
            ordered = self._ordered(units)
            pinned = (self.request.cpu_layers, self.request.n_cpu_moe)
            if pinned != (None, None):
                layers = pinned[0] or 0
                found = (layers, max(pinned[1] or 0, layers)) if self.model.moe is not None else (layers, 0)
            else:
                found = find_least_offload(self.sizer, self.budgets, ordered, users)
            if isinstance(found, str):
                if not found.startswith("the GPUs hold"):
                    out.rejections.append(Rejection(label, found))
                continue
            layers, experts = found
            placement = HostPlacement(machine, layers, experts, layers > 0, 0.0, 0.0)
            result = self.build_recipe(ordered, users, 0, offload=placement)
            if isinstance(result, Recipe):
                self._add(out, result, seen)
            else:
                out.rejections.append(Rejection(label, result))

    def _fits_somewhere(self, units: list[UnitType], users: int) -> bool:
        return bool(units) and isinstance(fill_layers(self.sizer, self.budgets, self._ordered(units), users), list)

    def memory_proportional_recipe(self, users: int) -> Recipe | str:
        """llama.cpp's and exo's default: one pipeline over every device in inventory order, layers
        in proportion to each device's capacity (largest remainder)."""
        by_id = {}
        for cls in self.classes:
            for ids in cls.device_ids:
                for device_id in ids:
                    by_id[device_id] = UnitType(cls, 1)
        units = [by_id[d.id] for d in self.cluster.devices if d.id in by_id]
        if len(units) > self.model.num_layers:
            return "more devices than layers"
        capacities = [max(u.device_class.capacity_bytes, 0.0) for u in units]
        total = sum(capacities) or 1.0
        shares = [self.model.num_layers * b / total for b in capacities]
        counts = [max(1, int(x)) for x in shares]
        order = sorted(range(len(units)), key=lambda i: (-(shares[i] - int(shares[i])), i))
        k = 0
        while sum(counts) < self.model.num_layers:
            counts[order[k % len(order)]] += 1
            k += 1
        while sum(counts) > self.model.num_layers:
            i = max(range(len(counts)), key=lambda j: (counts[j], -j))
            counts[i] -= 1
        return self.build_recipe(units, users, 0, counts)

    def _pinned_counts(self) -> list[int] | None:
        return list(self.request.layer_split) if self.request.layer_split else None

    def _fits(self, unit: UnitType, stages: int, users: int) -> bool:
        """The memory test alone: `stages` stages of `unit` hold the model for `users`."""
        counts = even_counts(self.engine, stages, self.model.num_layers)
        return isinstance(fill_layers(self.sizer, self.budgets, [unit] * stages, users, counts), list)

    def _smallest_pipeline(self, unit: UnitType, users: int) -> Recipe | str:
        """The fewest stages of `unit` that hold the model for `users` and that the engine can run.
        Where stages may be uneven, one greedy pass finds the fewest (each stage takes the most
        layers it holds until the rest fits the last); with even splits the memory test is
        monotone in the count, so a binary search does. The engine's layout rules (the same
        devices on every machine) then take the first legal count from there."""
        most = min(unit.available, self.model.num_layers)
        if unit.tp > 1 and not self.engine.layout.tensor_and_pipeline:
            most = 1
        if self.stages_pinned:
            if self.stages_pinned > unit.available:
                return f"{self.stages_pinned} stage(s) need {self.stages_pinned * unit.tp} devices, {unit.key} has {unit.available * unit.tp}"
            return self.build_recipe([unit] * self.stages_pinned, users, 0, self._pinned_counts())
        if self.engine.layout.pipeline == "even":
            if not self._fits(unit, most, users):
                return f"{most} stage(s): {self.build_recipe([unit] * most, users, 0)}"
            low, high = 1, most
            while low < high:
                middle = (low + high) // 2
                if self._fits(unit, middle, users):
                    high = middle
                else:
                    low = middle + 1
        else:
            low = self._fewest_stages(unit, users, most)
            if low is None:
                return f"{most} stage(s): {self.build_recipe([unit] * most, users, 0)}"
        reason = ""
        for stages in range(low, most + 1):
            result = self.build_recipe([unit] * stages, users, 0)
            if isinstance(result, Recipe):
                return result
            reason = reason or result
            if is_decode_speed_rejection(result):
                break  # more stages of the same unit only add hops: no user decodes faster
        return f"{low}-{most} stage(s): {reason}"

    def _fewest_stages(self, unit: UnitType, users: int, most: int) -> int | None:
        """The stages a greedy fill of `unit` needs for `users` (each takes the most layers it
        holds until the rest fits the last one), under one-stage settings; None past `most`. A
        longer pipeline's settings never hold more (SGLang reserves more per stage), so the
        callers' upward search from here finds the first that really fits."""
        self._check_time()
        settings, capacities = self.budgets.replica([unit])
        capacity = capacities[0]
        total = self.model.num_layers
        start = 0
        for k in range(most):
            rest = self.sizer.need_bytes(range(start, total), first=k == 0, last=True, tp=unit.tp, users=users,
                                         settings=settings)
            if rest <= capacity:
                return k + 1
            low, high = start, total - 1
            while low < high:
                middle = (low + high + 1) // 2
                need = self.sizer.need_bytes(range(start, middle), first=k == 0, last=False, tp=unit.tp, users=users,
                                             settings=settings)
                if need <= capacity:
                    low = middle
                else:
                    high = middle - 1
            if low == start:
                return None
            start = low
        return None

    def _add(self, out: CandidateSet, recipe: Recipe, seen: set[tuple]) -> None:
        key = (tuple((s.unit.key, s.first_layer, s.last_layer_exclusive) for s in recipe.stages), recipe.users,
               (recipe.host.layers, recipe.host.expert_layers) if recipe.host else None)
        if key in seen:
            return
        seen.add(key)
        out.recipes.append(replace(recipe, index=len(out.recipes)))

    def _mixed(self, out: CandidateSet, users: int, minimal: dict[int, int], seen: set[tuple], total_devices: int) -> None:
        """Pipelines over 2-3 unit types of different classes, with the smallest counts that fit.
        Only types the engine may mix in one replica are combined (one device model for vLLM and
        SGLang). On large clusters only mixes that include a type unable to hold a replica alone
        are tried: there, mixing is how weaker devices contribute at all. For each choice of the
        other counts, a binary search finds the fewest of the last type that fit (more stages never
        hold less), so the count vectors tried follow the edge of what fits."""
        same_model = not self.engine.layout.mixed_device_types
        by_model: dict[str, list[int]] = {}
        for i, unit in enumerate(self.units):
            by_model.setdefault(unit.device_class.spec.id if same_model else "", []).append(i)
        weight_bytes = self.weights.total_bytes
        for types in by_model.values():
            for size in range(2, min(MAX_TYPES_PER_RECIPE, len(types)) + 1):
                for combo in itertools.combinations(types, size):
                    self._check_time()
                    units = [self.units[i] for i in combo]
                    if len({u.device_class.index for u in units}) < size or check_units(self.engine, units, self.model.num_layers):
                        continue
                    if total_devices > SMALL_CLUSTER_DEVICES and all(i in minimal for i in combo):
                        continue
                    caps = []
                    for i in combo:
                        unit = self.units[i]
                        enough = math.ceil(weight_bytes / max(unit.device_class.capacity_bytes * unit.tp, 1.0)) + 1
                        caps.append(min(unit.available, minimal.get(i, enough)))
                    self._mixed_counts(out, combo, caps, users, seen)

    def _mixed_counts(self, out: CandidateSet, combo: tuple[int, ...], caps: list[int], users: int, seen: set[tuple]) -> None:
        fitted: list[tuple[int, ...]] = []
        heads = itertools.islice(itertools.product(*[range(1, c + 1) for c in caps[:-1]]), MAX_COUNT_COMBINATIONS)
        for head in heads:
            self._check_time()
            low, high = 1, caps[-1]
            if self.stages_pinned:
                low = high = self.stages_pinned - sum(head)
                if not 1 <= low <= caps[-1]:
                    continue
            elif not self._chain_fits(combo, (*head, high), users):
                continue
            while low < high:
                middle = (low + high) // 2
                if self._chain_fits(combo, (*head, middle), users):
                    high = middle
                else:
                    low = middle + 1
            counts = (*head, low)
            if any(all(f[j] <= counts[j] for j in range(len(counts))) for f in fitted):
                continue  # a smaller layout already fits; more devices would only add hops
            units = [self.units[i] for i, c in zip(combo, counts) for _ in range(c)]
            if self.request.layer_split:
                units = self._ordered(units)
            result = self.build_recipe(units, users, len(out.recipes), self._pinned_counts())
            if isinstance(result, Recipe):
                fitted.append(counts)
                self._add(out, result, seen)

    def _chain_fits(self, combo: tuple[int, ...], counts: tuple[int, ...], users: int) -> bool:
        """The memory test alone for a mixed chain (in the order build_recipe lays it out)."""
        units = self._ordered([self.units[i] for i, c in zip(combo, counts) for _ in range(c)])
        if check_units(self.engine, units, self.model.num_layers):
            return False
        return isinstance(fill_layers(self.sizer, self.budgets, units, users,
                                      even_counts(self.engine, len(units), self.model.num_layers)), list)


def _runs(recipe: Recipe, cls: int) -> list[int]:
    return sorted((n for c, n, _ in recipe.blocks if c == cls), reverse=True)


def _dominates(a: Recipe, b: Recipe, terms: tuple, packed: frozenset[int] = frozenset()) -> bool:
    """`a` can replace `b` in any plan: the same users, no more devices of any class, in classes
    packed machine by machine runs that fit wherever `b`'s do (each of `a`'s runs there matched to
    one of `b`'s at least as large), and no worse on every term of the objective (so no plan using
    `b` beats the same plan using `a`)."""
    used_a, used_b = dict(a.devices_by_class), dict(b.devices_by_class)
    if any(used_a.get(c, 0) > used_b.get(c, 0) for c in set(used_a) | set(used_b)):
        return False
    for cls in packed:
        runs_a, runs_b = _runs(a, cls), _runs(b, cls)
        if len(runs_a) > len(runs_b) or any(x > y for x, y in zip(runs_a, runs_b)):
            return False
    for term in terms:
        va, vb = a.term_value(term.name), b.term_value(term.name)
        if va is None or vb is None:
            if va is not vb:
                return False
            continue
        if not is_at_least_as_good(term, va, vb):
            return False
    return True


def without_dominated(recipes: list[Recipe], objective: str, packed: frozenset[int] = frozenset()) -> list[Recipe]:
    """Drop every recipe another dominates for `objective` (planner/schemas/objectives.py); of two
    that dominate each other the first is kept. The rest are renumbered in order. `packed`: the
    device classes whose runs the solver packs machine by machine (candidates/packing.py)."""
    terms = objective_terms(objective)
    by_users: dict[int, list[Recipe]] = {}
    for recipe in recipes:
        by_users.setdefault(recipe.users, []).append(recipe)
    dropped: set[int] = set()
    for group in by_users.values():
        for a in group:
            if a.index in dropped:
                continue
            for b in group:
                if b is not a and b.index not in dropped and _dominates(a, b, terms, packed):
                    dropped.add(b.index)
    kept = [r for r in recipes if r.index not in dropped]
    return [replace(r, index=i) for i, r in enumerate(kept)]


def build_candidates(model: ModelSpec, mix: PrecisionMix, request: ServeRequest, cluster: Cluster,
                     calibrations: dict[str, SpeedCalibration], engine: EngineProfile, topology: Topology | None = None,
                     coarse: bool = False, deadline: float | None = None, replicas_elsewhere: bool = False) -> CandidateSet:
    """All recipes for serving `model` on `cluster` with `engine` (coarse: fewer users-per-replica
    values; replicas_elsewhere: the users may also be split with replicas outside this cluster),
    built until `deadline` (a time.perf_counter() value) at the latest."""
    return RecipeBuilder(model, mix, request, cluster, calibrations, engine, topology, coarse, deadline,
                         replicas_elsewhere).build()
