"""Exhaustive search over recipe copies for small instances: the reference the CP-SAT model is
tested against. No ortools; it enumerates every combination within the device and user limits
and ranks them by the request's objective terms (planner/schemas/objectives.py), in order, then
by the solver's tie-breaker."""

from __future__ import annotations

from planner.candidates.recipes import CandidateSet
from planner.schemas.objectives import objective_terms


def _score(candidates: CandidateSet, copies: list[int]) -> tuple:
    """The lexicographic key of a choice, larger is better, in the solver's integer units."""
    recipes = candidates.recipes
    key = []
    for term in objective_terms(candidates.request.objective):
        values = [int(round((r.term_value(term.name) or 0.0) * term.scale)) for r in recipes]
        if term.aggregate == "sum":
            value = sum(v * n for v, n in zip(values, copies))
        else:
            used = [v for v, n in zip(values, copies) if n]
            value = min(used) if term.direction == "max" else max(used)
        key.append(value if term.direction == "max" else -value)
    key.append(sum((len(recipes) - r.index) * n for r, n in zip(recipes, copies)))
    return tuple(key)


def _packs(sizes: list[int], machines: int, per_machine: int) -> bool:
    """Whether runs of these sizes go into `machines` machines of `per_machine` devices each, every
    run whole in one machine (depth-first, largest first, skipping machines as full as one tried)."""
    sizes = sorted(sizes, reverse=True)
    free = [per_machine] * machines

    def place(i: int) -> bool:
        if i == len(sizes):
            return True
        tried = set()
        for m in range(machines):
            if free[m] >= sizes[i] and free[m] not in tried:
                tried.add(free[m])
                free[m] -= sizes[i]
                if place(i + 1):
                    return True
                free[m] += sizes[i]
        return False

    return place(0)


def fits_machines(candidates: CandidateSet, copies: list[int]) -> bool:
    """Every replica's runs of stages (Recipe.blocks) fit the machines of their device class."""
    runs: dict[int, list[int]] = {}
    for recipe, n in zip(candidates.recipes, copies):
        for cls, devices, _ in recipe.blocks:
            runs.setdefault(cls, []).extend([devices] * n)
    return all(_packs(sizes, len(candidates.classes[cls].nodes), candidates.classes[cls].devices_per_node)
               for cls, sizes in runs.items())


def brute_force_best(candidates: CandidateSet, *, limit: int = 200_000) -> tuple[tuple, dict[int, int]] | None:
    """The best (key, copies) over every feasible combination of copies, or None when no
    combination serves exactly the users."""
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
            if left == 0 and fits_machines(candidates, copies):
                key = _score(candidates, copies)
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
    return best[0], {i: n for i, n in enumerate(best[1]) if n}
