"""CP-SAT choice among training layouts: exactly one, the fastest, then the fewest devices."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from planner.candidates.training import TrainingCandidates
from planner.schemas.objectives import TERMS
from planner.schemas.plan import SolveStatus
from planner.solver.solve import build_solver, run_solver

SPEED_SCALE = TERMS["total_tokens_per_s"].scale


@dataclass(frozen=True)
class TrainingChoice:
    """The chosen layout index and the solver's status."""

    status: SolveStatus
    index: int | None
    objective: float | None
    bound: float | None
    wall_s: float


def add_one_layout(model: cp_model.CpModel, choose: dict[int, cp_model.IntVar]) -> None:
    """Exactly one layout is used."""
    model.AddExactlyOne(choose.values())


def solve_training(candidates: TrainingCandidates, *, time_limit_s: float = 30.0) -> TrainingChoice:
    """Pick the layout with the most tokens/s; ties go to fewer devices, then the lower index."""
    start = time.perf_counter()
    if not candidates.layouts:
        return TrainingChoice(SolveStatus.INFEASIBLE, None, None, None, time.perf_counter() - start)
    model = cp_model.CpModel()
    choose = {layout.index: model.NewBoolVar(f"choose[layout={layout.index}]") for layout in candidates.layouts}
    add_one_layout(model, choose)
    n = len(candidates.layouts)
    devices_span = max(layout.devices for layout in candidates.layouts) + 1
    speed = sum(int(round(layout.tokens_per_s * SPEED_SCALE)) * choose[layout.index] for layout in candidates.layouts)
    tie = sum(((devices_span - layout.devices) * (n + 1) + (n - layout.index)) * choose[layout.index] for layout in candidates.layouts)
    model.Maximize(speed * devices_span * (n + 1) + tie)
    solver = build_solver(time_limit_s)  # deterministic, Ctrl-C safe (planner/solver/solve.py)
    result = run_solver(solver, model)
    if result not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        status = SolveStatus.TIMED_OUT if result == cp_model.UNKNOWN else SolveStatus.INFEASIBLE
        return TrainingChoice(status, None, None, None, time.perf_counter() - start)
    index = next(i for i, var in choose.items() if solver.Value(var))
    value = candidates.layouts[index].tokens_per_s
    bound = solver.BestObjectiveBound() / (devices_span * (n + 1)) / SPEED_SCALE
    status = SolveStatus.OPTIMAL if result == cp_model.OPTIMAL else SolveStatus.FEASIBLE
    return TrainingChoice(status, index, value, max(bound, value) if status == SolveStatus.FEASIBLE else value,
                          time.perf_counter() - start)
