"""Run the CP-SAT model: hint, parameters, objectives in order, honest status."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from ortools.sat.python import cp_model

from planner.candidates.recipes import CandidateSet
from planner.solver.model import SPEED_SCALE, add_copy_variables, add_device_limits, build_model, max_copies, tie_breaker

SPEED_TERMS = ("total_tokens_per_s", "slowest_user_speed")

SEED = 20261128


class SolveStatus(str, Enum):
    """The planner's own solver status."""

    OPTIMAL = "optimal"  # proven best for the candidate layouts
    FEASIBLE = "feasible"  # a plan, with the proven bound and gap
    INFEASIBLE = "infeasible"  # proven: no combination of layouts serves every user
    TIMED_OUT = "timed_out"  # the time limit came before any plan; not a proof of infeasibility


@dataclass(frozen=True)
class SolveResult:
    """What the solver chose and how sure it is."""

    status: SolveStatus
    copies: dict[int, int]  # recipe index -> replicas
    objective: float | None  # value of the primary objective term
    bound: float | None  # best proven bound on it
    objective_name: str
    wall_s: float


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
    return copies if not remaining_users else {}


def _parameters(time_limit_s: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.random_seed = SEED
    # One worker: CP-SAT's single-threaded search is fully deterministic for a fixed seed, so the
    # same input gives the same plan. (Its deterministic multi-worker mode, interleave_search,
    # aborts the process on some infeasible models with a solution hint in OR-Tools 9.15.)
    solver.parameters.num_workers = 1
    return solver


def solve_candidates(candidates: CandidateSet, *, time_limit_s: float = 30.0) -> SolveResult:
    """Choose replica copies: each objective term in turn, then the tie-breaker."""
    start = time.perf_counter()
    if not candidates.recipes:
        return SolveResult(SolveStatus.INFEASIBLE, {}, None, None, "none", time.perf_counter() - start)
    model, v, terms = build_model(candidates)
    hint = heuristic_copies(candidates)
    for index, var in v.copies.items():
        model.AddHint(var, hint.get(index, 0))
    status = SolveStatus.OPTIMAL
    primary = None
    bound = None
    # The last term and the tie-breaker share one solve: the tie-breaker's span (copies x recipes)
    # is below the weight given to the last term, so it only decides between equal values.
    tie = tie_breaker(v, candidates)
    tie_span = sum((len(candidates.recipes) - r.index) * max_copies(r, candidates) for r in candidates.recipes) + 1
    stages = [(t.name, t.weight * t.expression) for t in terms[:-1]]
    stages.append((terms[-1].name, tie_span * terms[-1].weight * terms[-1].expression + tie))
    values: dict[int, int] = {}
    for number, (name, expression) in enumerate(stages):
        remaining = time_limit_s - (time.perf_counter() - start)
        if remaining <= 0:
            break
        model.Maximize(expression)
        solver = _parameters(remaining)
        result = solver.Solve(model)
        if result == cp_model.INFEASIBLE:
            return SolveResult(SolveStatus.INFEASIBLE, {}, None, None, terms[0].name, time.perf_counter() - start)
        if result not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if number == 0:
                kind = SolveStatus.TIMED_OUT if result == cp_model.UNKNOWN else SolveStatus.INFEASIBLE
                return SolveResult(kind, {}, None, None, terms[0].name, time.perf_counter() - start)
            break
        values = {i: int(solver.Value(var)) for i, var in v.copies.items()}
        if number == 0:
            # Report in natural units: tokens/s (the model counts milli-tokens/s), dollars, devices.
            scale = terms[0].weight / (SPEED_SCALE if terms[0].name in SPEED_TERMS else 1)
            if len(stages) == 1:
                scale /= tie_span
            primary = solver.ObjectiveValue() * scale
            bound = solver.BestObjectiveBound() * scale
            if result != cp_model.OPTIMAL:
                status = SolveStatus.FEASIBLE
        if result != cp_model.OPTIMAL:
            break
        model.Add(expression == int(round(solver.ObjectiveValue())))
        model.ClearHints()
        for index, var in v.copies.items():
            model.AddHint(var, values[index])
    return SolveResult(status, {i: n for i, n in values.items() if n}, primary, bound, terms[0].name, time.perf_counter() - start)


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
    solver = _parameters(time_limit_s)
    solver.Solve(model)
    return int(solver.BestObjectiveBound())
