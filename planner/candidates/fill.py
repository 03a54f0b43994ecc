"""Lay contiguous layers onto a chain of tensor-parallel units, and size what each stage holds.

Every number here comes from the StageSizer (estimate/stage.py) and the engine's memory model
(estimate/engines/), so a stage's memory is computed once, when the candidate is built, and
carried unchanged into the plan. Every stage of one replica runs under the same engine settings
(one launch, one set of flags).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.candidates.classes import Budgets, UnitType
from planner.estimate.engines import EngineSettings, KVCapacity
from planner.estimate.stage import DeviceMemory, StageSizer
from planner.units import to_gb


@dataclass(frozen=True)
class Stage:
    """One pipeline stage of a recipe, with what each of its devices holds."""

    unit: UnitType
    first_layer: int
    last_layer_exclusive: int
    memory: DeviceMemory  # per device of the stage
    capacity_bytes: float  # what the engine may fill on each of its devices
    kv_cache_tokens: int  # tokens its free memory holds in whole blocks (one sequence)

    @property
    def layers(self) -> range:
        return range(self.first_layer, self.last_layer_exclusive)

    @property
    def free_bytes(self) -> float:
        """What the cache may take beyond the users' needs: capacity less everything but the cache."""
        return self.capacity_bytes - (self.memory.total_bytes - self.memory.kv_cache_bytes)


def _largest_end(sizer: StageSizer, unit: UnitType, start: int, limit: int, *, first: bool, users: int,
                 settings: EngineSettings, capacity: float, stages: int) -> int:
    """The last layer (exclusive) a non-final stage starting at `start` can hold, at most `limit`
    (more layers never need less memory, so a binary search finds it)."""
    low, high = start, limit
    while low < high:
        middle = (low + high + 1) // 2
        need = sizer.need_bytes(range(start, middle), first=first, last=False, tp=unit.tp, users=users,
                                settings=settings, pipeline_stages=stages)
        if need <= capacity:
            low = middle
        else:
            high = middle - 1
    return low


def fill_layers(sizer: StageSizer, budgets: Budgets, units: list[UnitType], users: int,
                counts: list[int] | None = None, first_layer: int = 0) -> list[tuple[int, int]] | str:
    """Contiguous layers from `first_layer` on for `units` in order: each takes as many layers as
    fit, leaving at least one per remaining stage; the last takes the rest. With `counts`, each
    stage takes exactly that many layers. Returns (start, end) per stage, or the reason it does
    not fit."""
    total = sizer.model.num_layers
    settings, capacities = budgets.replica(units)
    n = len(units)
    start = first_layer
    out: list[tuple[int, int]] = []
    for k, unit in enumerate(units):
        first, last = k == 0, k == n - 1
        capacity = capacities[k]
        if last:
            need = sizer.need_bytes(range(start, total), first=first, last=True, tp=unit.tp, users=users,
                                    settings=settings, pipeline_stages=n)
            if need > capacity:
                return (f"stage {k} on {unit.key} needs {to_gb(need):,.1f} GB for layers {start}-{total - 1}, "
                        f"it has {to_gb(capacity):,.1f} GB")
            out.append((start, total))
            return out
        if counts is not None:
            end = start + counts[k]
            need = sizer.need_bytes(range(start, end), first=first, last=False, tp=unit.tp, users=users,
                                    settings=settings, pipeline_stages=n)
            if need > capacity:
                return f"stage {k} on {unit.key} cannot hold its {counts[k]} layers ({to_gb(capacity):,.1f} GB capacity)"
        else:
            end = _largest_end(sizer, unit, start, total - (n - k - 1), first=first, users=users, settings=settings,
                               capacity=capacity, stages=n)
        if end == start:
            return f"stage {k} on {unit.key} cannot hold a single layer ({to_gb(capacity):,.1f} GB capacity)"
        out.append((start, end))
        start = end
    return "no stages"


def build_stages(sizer: StageSizer, budgets: Budgets, units: list[UnitType], spans: list[tuple[int, int]],
                 users: int) -> tuple[tuple[Stage, ...], EngineSettings, KVCapacity]:
    """The stages with their memory, the launch's settings, and the replica's cache in the
    engine's own terms (the tightest stage sets it, as every engine sizes its cache)."""
    settings, capacities = budgets.replica(units)
    n = len(units)
    memo = sizer.__dict__.setdefault("_stages", {})
    key = (tuple((u.device_class.index, u.tp) for u in units), tuple(spans), users)
    if key not in memo:
        stages = []
        for k, (unit, (start, end)) in enumerate(zip(units, spans)):
            layers = range(start, end)
            memory = sizer.memory(layers, first=k == 0, last=k == n - 1, tp=unit.tp, users=users, settings=settings,
                                  pipeline_stages=n, stage=k)
            free = capacities[k] - (memory.total_bytes - memory.kv_cache_bytes)
            layout = sizer.layout(unit.tp, settings, n)
            tokens = layout.blocks(free, start, end) * layout.block_size
            stages.append(Stage(unit, start, end, memory, capacities[k], max(0, tokens)))
        layout = sizer.layout(units[0].tp, settings, n)
        capacity = sizer.engine.capacity(sizer.model, layout, [(s.layers, s.free_bytes) for s in stages],
                                         context=sizer.context, users=users, settings=settings)
        memo[key] = (tuple(stages), settings, capacity)
    return memo[key]
