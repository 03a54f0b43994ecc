"""Runs of stages into machines. A replica's runs (Recipe.blocks) each go into one machine whole,
since its speed was computed for hops inside a run staying in the machine; so a device class of
several machines must hold its runs' sizes, not only their count.

Counting devices is enough when a class's run sizes form a chain, each dividing the next and the
machine's device count: placing runs largest first keeps every machine's free devices a multiple
of the size being placed, so any machine with room has room for it. Other classes get an explicit
packing in the solver (planner/solver/model.py, add_machine_packing)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planner.candidates.recipes import CandidateSet, Recipe


def run_sizes(recipe: Recipe) -> dict[int, Counter]:
    """Per device class, how many runs of each size (devices) the recipe has."""
    out: dict[int, Counter] = {}
    for cls, devices, _ in recipe.blocks:
        out.setdefault(cls, Counter())[devices] += 1
    return out


def _chain(sizes: list[int], machine: int) -> bool:
    ordered = sorted(set(sizes))
    return all(b % a == 0 for a, b in zip(ordered, ordered[1:])) and all(machine % s == 0 for s in ordered)


def classes_to_pack(candidates: CandidateSet) -> dict[int, tuple[int, ...]]:
    """Device classes whose runs the device count alone does not place, with their run sizes."""
    sizes: dict[int, set[int]] = {}
    for recipe in candidates.recipes:
        for cls, counts in run_sizes(recipe).items():
            sizes.setdefault(cls, set()).update(counts)
    out = {}
    for cls, found in sorted(sizes.items()):
        device_class = candidates.classes[cls]
        if len(device_class.nodes) > 1 and not _chain(list(found), device_class.devices_per_node):
            out[cls] = tuple(sorted(found))
    return out
