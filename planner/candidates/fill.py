"""Lay contiguous layers onto a chain of tensor-parallel units, and size what each stage holds.

Every number here comes from the StageSizer (estimate/stage.py), so a stage's memory is computed
once, when the candidate is built, and carried unchanged into the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.candidates.classes import UnitType
from planner.estimate.activations import estimate_logits_bytes
from planner.estimate.kv_cache import estimate_context_fitting
from planner.estimate.stage import DeviceMemory, StageSizer
from planner.units import to_gb


@dataclass(frozen=True)
class Stage:
    """One pipeline stage of a recipe, with what each of its devices holds."""

    unit: UnitType
    first_layer: int
    last_layer_exclusive: int
    memory: DeviceMemory  # per device of the stage
    kv_cache_tokens: int  # tokens of one sequence its free memory holds, whole pages
    max_users: int  # users it could hold at the requested context

    @property
    def layers(self) -> range:
        return range(self.first_layer, self.last_layer_exclusive)


def _largest_end(sizer: StageSizer, unit: UnitType, start: int, limit: int, *, first: bool, users: int) -> int:
    """The last layer (exclusive) a non-final stage starting at `start` can hold, at most `limit`
    (more layers never need less memory, so a binary search finds it)."""
    capacity = unit.device_class.capacity_bytes
    low, high = start, limit
    while low < high:
        middle = (low + high + 1) // 2
        need = sizer.need_bytes(range(start, middle), first=first, last=False, tp=unit.tp, users=users)
        if need <= capacity:
            low = middle
        else:
            high = middle - 1
    return low


def fill_layers(sizer: StageSizer, units: list[UnitType], users: int,
                counts: list[int] | None = None) -> list[tuple[int, int]] | str:
    """Contiguous layers for `units` in order: each takes as many layers as fit, leaving at least
    one per remaining stage; the last takes the rest. With `counts`, each stage takes exactly that
    many layers. Returns (start, end) per stage, or the reason it does not fit."""
    total = sizer.model.num_layers
    start = 0
    out: list[tuple[int, int]] = []
    for k, unit in enumerate(units):
        first, last = k == 0, k == len(units) - 1
        capacity = unit.device_class.capacity_bytes
        if last:
            need = sizer.need_bytes(range(start, total), first=first, last=True, tp=unit.tp, users=users)
            if need > capacity:
                return (f"stage {k} on {unit.key} needs {to_gb(need):,.1f} GB for layers {start}-{total - 1}, "
                        f"it has {to_gb(capacity):,.1f} GB")
            out.append((start, total))
            return out
        if counts is not None:
            end = start + counts[k]
            need = sizer.need_bytes(range(start, end), first=first, last=False, tp=unit.tp, users=users)
            if need > capacity:
                return f"stage {k} on {unit.key} cannot hold its {counts[k]} layers ({to_gb(capacity):,.1f} GB capacity)"
        else:
            end = _largest_end(sizer, unit, start, total - (len(units) - k - 1), first=first, users=users)
        if end == start:
            return f"stage {k} on {unit.key} cannot hold a single layer ({to_gb(capacity):,.1f} GB capacity)"
        out.append((start, end))
        start = end
    return "no stages"


def build_stages(sizer: StageSizer, units: list[UnitType], spans: list[tuple[int, int]], users: int,
                 block_size: int, max_context: int) -> tuple[Stage, ...]:
    """The stages with their memory and KV capacity. A stage's free memory is its capacity less
    everything but the cache; it holds min(context, window) tokens per layer in whole pages of
    `block_size` tokens, as vLLM allocates them; each extra user also needs its fp32 logits."""
    stages = []
    last = len(units) - 1
    memo = sizer.__dict__.setdefault("_stages", {})
    for k, (unit, (start, end)) in enumerate(zip(units, spans)):
        key = (unit.device_class.index, unit.tp, start, end, k == 0, k == last, users, k, block_size)
        if key not in memo:
            memo[key] = _build_stage(sizer, unit, start, end, k, k == last, users, block_size, max_context)
        stages.append(memo[key])
    return tuple(stages)


def _build_stage(sizer: StageSizer, unit: UnitType, start: int, end: int, k: int, last: bool, users: int,
                 block_size: int, max_context: int) -> Stage:
    layers = range(start, end)
    memory = sizer.memory(layers, first=k == 0, last=last, tp=unit.tp, users=users, stage=k)
    free = unit.device_class.capacity_bytes - (memory.total_bytes - memory.kv_cache_bytes)
    attention = [sizer.attention(unit.tp)[i] for i in layers]
    tokens = estimate_context_fitting(attention, free, max_context) // block_size * block_size
    logits = estimate_logits_bytes(sizer.model, 1) if last else 0.0
    per_user = sizer.kv_bytes(layers, tp=unit.tp, users=1) + logits
    most = int((free + logits * users) // per_user) if per_user > 0 else 0
    return Stage(unit, start, end, memory, max(0, tokens), max(0, most))
