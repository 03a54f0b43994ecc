"""Run the CP-SAT model: hint, parameters, objectives in order, honest status.

CP-SAT runs in a worker thread so that Ctrl-C stops it at once and reaches the caller as
KeyboardInterrupt, rather than being taken by the solver as "stop and report the best so far"
(which would make an interrupted run look like a timed-out plan).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from planner.candidates.recipes import CandidateSet
from planner.schemas.objectives import objective_terms
from planner.schemas.plan import SolveStatus
from planner.solver.model import (
    add_copy_variables,
    add_device_limits,
    build_model,
    max_copies,
    tie_breaker,
)

SEED = 20261128

__all__ = ["SolveStatus", "SolveResult", "solve_candidates", "heuristic_copies", "users_upper_bound", "run_solver", "SEED"]


@dataclass(frozen=True)
class SolveResult:
    """What the solver chose and how sure it is."""

    status: SolveStatus
    copies: dict[int, int]  # recipe index -> replicas
    objective: float | None  # value of the primary objective term, natural units
    bound: float | None  # best proven bound on it
    objective_name: str
    objective_unit: str
    wall_s: float
    # per packed device class, per machine: runs of each size it holds (candidates/packing.py)
    runs: dict[int, tuple[dict[int, int], ...]] = field(default_factory=dict)


def heuristic_copies(candidates: CandidateSet) -> dict[int, int]:
    """A fast plan to hint the solver: the recipe with the best tokens/s per device, repeated while
    devices and users allow, then the rest of the users on the best recipe that still fits."""
    remaining_users = candidates.request.users
    free = {c.index: c.devices for c in candidates.classes}
    copies: dict[int, int] = {}
    order = sorted(candidates.recipes, key=lambda r: (-r.tokens_per_s / r.devices, r.index))
    progress = True
    while remaining_users and progress:
        progress = False
        for recipe in order:
            if recipe.users <= remaining_users and all(free[c] >= n for c, n in recipe.devices_by_class):
                for c, n in recipe.devices_by_class:
                    free[c] -= n
                remaining_users -= recipe.users
                copies[recipe.index] = copies.get(recipe.index, 0) + 1
                progress = True
                break
    pinned = candidates.request.data_parallel_size
    if remaining_users or (pinned is not None and sum(copies.values()) != pinned):
        return {}
    return copies


def build_solver(time_limit_s: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit_s, 0.001)
    solver.parameters.random_seed = SEED
    # One worker: CP-SAT's single-threaded search is fully deterministic for a fixed seed, so the
    # same input gives the same plan. (Its deterministic multi-worker mode, interleave_search,
    # aborts the process on some infeasible models with a solution hint in OR-Tools 9.15.)
    solver.parameters.num_workers = 1
    solver.parameters.catch_sigint_signal = False  # Ctrl-C is the caller's (see run_solver)
    return solver


def run_solver(solver: cp_model.CpSolver, model: cp_model.CpModel) -> int:
    """solver.Solve(model) in a worker thread; on KeyboardInterrupt stop the search, wait for it
    and re-raise, so an interrupted solve never passes for a finished one."""
    done = threading.Event()
    result: dict[str, int] = {}

    def work() -> None:
        try:
            result["status"] = solver.Solve(model)
        finally:
            done.set()

    worker = threading.Thread(target=work, name="cp-sat", daemon=True)
    worker.start()
    try:
        while not done.wait(0.05):
            pass
    except KeyboardInterrupt:
        solver.StopSearch()
        while not done.wait(0.05):
            pass
        raise
    worker.join()
    return result["status"]


def solve_candidates(candidates: CandidateSet, *, time_limit_s: float = 30.0,
                     progress: Callable[[str], None] | None = None) -> SolveResult:
    """Choose replica copies: each objective term in turn, then the tie-breaker (each term's value
    and proven bound reported to `progress` when given)."""
    start = time.perf_counter()
    terms_spec = objective_terms(candidates.request.objective)
    primary = terms_spec[0]

    def result(status: SolveStatus, copies: dict[int, int], value: float | None = None, bound: float | None = None,
               runs: dict[int, tuple[dict[int, int], ...]] | None = None) -> SolveResult:
        return SolveResult(status, copies, value, bound, primary.name, primary.unit, time.perf_counter() - start, runs or {})

    if not candidates.recipes:
        return result(SolveStatus.INFEASIBLE, {})
    model, v, terms = build_model(candidates)
    hint = heuristic_copies(candidates)
    for index, var in v.copies.items():
        model.AddHint(var, hint.get(index, 0))
    status = SolveStatus.OPTIMAL
    bound = None
    # The last term and the tie-breaker share one solve: the tie-breaker's span (copies x recipes)
    # is below the weight given to the last term, so it only decides between equal values.
    tie = tie_breaker(v, candidates)
    tie_span = sum((len(candidates.recipes) - r.index) * max_copies(r, candidates) for r in candidates.recipes) + 1
    stages = [t.expression for t in terms[:-1]] + [tie_span * terms[-1].expression + tie]
    values: dict[int, int] = {}
    runs: dict[int, tuple[dict[int, int], ...]] = {}
    for number, expression in enumerate(stages):
        remaining = time_limit_s - (time.perf_counter() - start)
        if remaining <= 0:
            if number == 0:
                return result(SolveStatus.TIMED_OUT, {})
            status = SolveStatus.FEASIBLE if status == SolveStatus.OPTIMAL else status
            break
        model.Maximize(expression)
        solver = build_solver(remaining)
        code = run_solver(solver, model)
        if code == cp_model.INFEASIBLE:
            return result(SolveStatus.INFEASIBLE, {})
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if number == 0:
                return result(SolveStatus.TIMED_OUT if code == cp_model.UNKNOWN else SolveStatus.INFEASIBLE, {})
            break
        values = {i: int(solver.Value(var)) for i, var in v.copies.items()}
        runs = {cls: tuple({s: int(solver.Value(grid[s][m])) for s in grid if solver.Value(grid[s][m])}
                           for m in range(len(next(iter(grid.values())))))
                for cls, grid in v.runs.items()}
        if progress is not None:
            term = terms[min(number, len(terms) - 1)].spec

            def natural(raw: float) -> float:
                # The last stage adds the tie-breaker, below one unit of the term: take it off.
                units = math.floor(raw / tie_span) if number == len(stages) - 1 else raw
                return units * (1 if term.direction == "max" else -1) / term.scale

            progress(f"solver: {term.name} {natural(solver.ObjectiveValue()):,.3f} {term.unit}, bound "
                     f"{natural(solver.BestObjectiveBound()):,.3f} ({solver.StatusName(code).lower()}, "
                     f"term {number + 1} of {len(stages)})")
        if number == 0:
            # Natural units: the model maximises scale x value (negated for minimised terms).
            scale = (1 if primary.direction == "max" else -1) / primary.scale / (tie_span if len(stages) == 1 else 1)
            bound = solver.BestObjectiveBound() * scale
            if code != cp_model.OPTIMAL:
                status = SolveStatus.FEASIBLE
        if code != cp_model.OPTIMAL:
            break
        model.Add(expression == int(round(solver.ObjectiveValue())))
        model.ClearHints()
        for index, var in v.copies.items():
            model.AddHint(var, values[index])
    copies = {i: n for i, n in values.items() if n}
    value = estimate_term_value(candidates, copies, primary.name)
    return result(status, copies, value, value if status == SolveStatus.OPTIMAL else bound, runs)


def estimate_term_value(candidates: CandidateSet, copies: dict[int, int], name: str) -> float | None:
    """An objective term's value for a choice of copies, in natural units."""
    spec = next(t for t in objective_terms(candidates.request.objective) if t.name == name)
    values = [(candidates.recipes[i].term_value(name), n) for i, n in copies.items() if n]
    if not values or any(v is None for v, _ in values):
        return None
    if spec.aggregate == "sum":
        return sum(v * n for v, n in values)
    return min(v for v, _ in values)


def users_upper_bound(candidates: CandidateSet, *, time_limit_s: float = 1.0) -> int:
    """A proven upper bound on the users any plan can serve (devices limited, users not matched
    exactly): when it is below the users asked for, no plan exists."""
    if not candidates.recipes:
        return 0
    model = cp_model.CpModel()
    v = add_copy_variables(model, candidates)
    add_device_limits(model, v, candidates)
    users = sum(r.users * v.copies[r.index] for r in candidates.recipes)
    model.Add(users <= candidates.request.users)
    model.Maximize(users)
    solver = build_solver(time_limit_s)
    run_solver(solver, model)
    return int(solver.BestObjectiveBound())
