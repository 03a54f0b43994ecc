"""What to buy: how many machines of each template, jointly with the replicas they run, as one
CP-SAT model (docs/whatif.md).

Each offer is a template (with a weight format) whose layouts were built on up to `machines`
machines of it. Variables: the serving model's copies[recipe] per offer (planner/solver/model.py)
and bought[offer], the machines bought. Rules, in order:
  add_device_limits    per offer, as in a deploy (the machines offered);
  add_machine_packing  per offer, as in a deploy;
  add_purchases        the replicas of an offer fit the machines bought: its devices in use are
                       at most bought x devices per machine, and a packed machine beyond the ones
                       bought holds nothing;
  add_market_users     the replicas of all offers serve exactly the users asked for.
Objectives, one after another: the cost of the machines bought, then total tokens/s, then a
tie-breaker (fewer machines, earlier offers, lower recipe indices). A replica never spans two
templates: each runs on machines of one kind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from planner.candidates.recipes import CandidateSet
from planner.schemas.plan import SolveStatus
from planner.solver.model import (
    Variables,
    add_copy_variables,
    add_device_limits,
    add_machine_packing,
    max_copies,
)
from planner.solver.solve import build_solver, run_solver

COST_SCALE = 100  # solver units per USD (cents): hourly prices need them
SPEED_SCALE = 1000  # solver units per token/s


@dataclass(frozen=True)
class Offer:
    """Machines of one template on offer, with the layouts built on `machines` of them."""

    key: str
    candidates: CandidateSet
    machines: int  # the most that may be bought
    machine_cost_usd: float


@dataclass(frozen=True)
class MarketChoice:
    """What the solver bought and ran, and how sure it is."""

    status: SolveStatus
    bought: dict[str, int]  # offer key -> machines
    copies: dict[str, dict[int, int]]  # offer key -> recipe index -> replicas
    cost_usd: float | None
    bound_usd: float | None  # proven lower bound on the cost
    tokens_per_s: float | None
    wall_s: float


def add_purchases(model: cp_model.CpModel, v: Variables, offer: Offer, bought: cp_model.IntVar) -> None:
    """The replicas of an offer fit the machines bought."""
    candidates = offer.candidates
    for cls in candidates.classes:
        used = [devices * v.copies[r.index] for r in candidates.recipes for c, devices in r.devices_by_class if c == cls.index]
        if used:
            model.Add(sum(used) <= bought * cls.devices_per_node)
        grid = v.runs.get(cls.index)
        if grid:
            for m in range(len(cls.nodes)):
                beyond = model.NewBoolVar(f"unbought[offer={offer.key},class={cls.index},machine={m}]")
                model.Add(bought <= m).OnlyEnforceIf(beyond)
                model.Add(bought >= m + 1).OnlyEnforceIf(beyond.Not())
                for size, machines in grid.items():
                    model.Add(machines[m] == 0).OnlyEnforceIf(beyond)


def add_market_users(model: cp_model.CpModel, chosen: list[tuple[Offer, Variables]], users: int) -> None:
    """The replicas of all offers serve exactly the users asked for."""
    model.Add(sum(r.users * v.copies[r.index] for offer, v in chosen for r in offer.candidates.recipes) == users)


def solve_market(offers: list[Offer], users: int, *, time_limit_s: float = 30.0) -> MarketChoice:
    """The cheapest machines that serve `users`, then the fastest plan on them."""
    start = time.perf_counter()

    def result(status: SolveStatus, bought: dict | None = None, copies: dict | None = None, cost: float | None = None,
               bound: float | None = None, speed: float | None = None) -> MarketChoice:
        return MarketChoice(status, bought or {}, copies or {}, cost, bound, speed, time.perf_counter() - start)

    offers = [o for o in offers if o.candidates.recipes and o.machines > 0]
    if not offers:
        return result(SolveStatus.INFEASIBLE)
    model = cp_model.CpModel()
    chosen: list[tuple[Offer, Variables]] = []
    bought: dict[str, cp_model.IntVar] = {}
    for offer in offers:
        v = add_copy_variables(model, offer.candidates)
        add_device_limits(model, v, offer.candidates)
        add_machine_packing(model, v, offer.candidates)
        bought[offer.key] = model.NewIntVar(0, offer.machines, f"bought[offer={offer.key}]")
        add_purchases(model, v, offer, bought[offer.key])
        chosen.append((offer, v))
    add_market_users(model, chosen, users)
    cost = sum(int(round(o.machine_cost_usd * COST_SCALE)) * bought[o.key] for o in offers)
    speed = sum(int(round(r.tokens_per_s * SPEED_SCALE)) * v.copies[r.index] for o, v in chosen for r in o.candidates.recipes)
    tie_terms = [(k + 1) * bought[o.key] for k, o in enumerate(offers)]
    tie_terms += [(r.index + 1) * v.copies[r.index] for o, v in chosen for r in o.candidates.recipes]
    tie_span = sum((k + 1) * o.machines for k, o in enumerate(offers)) + sum(
        (r.index + 1) * max_copies(r, o.candidates) for o, _ in chosen for r in o.candidates.recipes) + 1
    stages = [-cost, tie_span * speed - sum(tie_terms)]
    status, bound = SolveStatus.OPTIMAL, None
    values: dict[str, dict[int, int]] = {}
    counts: dict[str, int] = {}
    for number, expression in enumerate(stages):
        remaining = time_limit_s - (time.perf_counter() - start)
        if remaining <= 0:
            if number == 0:
                return result(SolveStatus.TIMED_OUT)
            break
        model.Maximize(expression)
        solver = build_solver(remaining)
        code = run_solver(solver, model)
        if code == cp_model.INFEASIBLE:
            return result(SolveStatus.INFEASIBLE)
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if number == 0:
                return result(SolveStatus.TIMED_OUT)
            break
        values = {o.key: {r.index: int(solver.Value(v.copies[r.index])) for r in o.candidates.recipes
                          if solver.Value(v.copies[r.index])} for o, v in chosen}
        counts = {o.key: int(solver.Value(bought[o.key])) for o in offers}
        if number == 0:
            bound = -solver.BestObjectiveBound() / COST_SCALE
            if code != cp_model.OPTIMAL:
                status = SolveStatus.FEASIBLE
                break
        if code != cp_model.OPTIMAL:
            break
        model.Add(expression == int(round(solver.ObjectiveValue())))
    spent = sum(o.machine_cost_usd * counts[o.key] for o in offers)
    tokens = sum(o.candidates.recipes[i].tokens_per_s * n for o in offers for i, n in values[o.key].items())
    return result(status, {k: n for k, n in counts.items() if n}, {k: c for k, c in values.items() if c}, spent,
                  spent if status == SolveStatus.OPTIMAL else bound, tokens)
