"""Exhaustive search over recipe copies for small instances: the reference the CP-SAT model is
tested against. No ortools; it enumerates every combination within the device and user limits."""

from __future__ import annotations

from planner.candidates.recipes import CandidateSet
from planner.solver.model import SPEED_SCALE


def brute_force_best(candidates: CandidateSet, *, limit: int = 200_000) -> tuple[float, dict[int, int]] | None:
    """The highest total tokens/s (ties: fewer devices, then lower recipe indices) over every
    feasible combination of copies, or None when no combination serves exactly the users."""
    recipes = candidates.recipes
    users = candidates.request.users
    capacity = {c.index: c.devices for c in candidates.classes}
    best: tuple | None = None
    visited = 0

    def search(i: int, left: int, free: dict[int, int], copies: list[int]) -> None:
        nonlocal best, visited
        visited += 1
        if visited > limit:
            raise RuntimeError("instance too large for brute force")
        if i == len(recipes):
            if left:
                return
            speed = sum(round(r.tokens_per_s * SPEED_SCALE) * n for r, n in zip(recipes, copies))
            devices = sum(r.devices * n for r, n in zip(recipes, copies))
            tie = sum((len(recipes) - r.index) * n for r, n in zip(recipes, copies))
            key = (speed, -devices, tie)
            if best is None or key > best[0]:
                best = (key, list(copies))
            return
        recipe = recipes[i]
        most = left // recipe.users
        for c, n in recipe.devices_by_class:
            most = min(most, free[c] // n)
        for count in range(most, -1, -1):
            for c, n in recipe.devices_by_class:
                free[c] -= n * count
            copies.append(count)
            search(i + 1, left - recipe.users * count, free, copies)
            copies.pop()
            for c, n in recipe.devices_by_class:
                free[c] += n * count

    search(0, users, dict(capacity), [])
    if best is None:
        return None
    return best[0][0] / SPEED_SCALE, {i: n for i, n in enumerate(best[1]) if n}
