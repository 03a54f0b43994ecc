"""The serving deployment as a CP-SAT model that reads like its specification (docs/solver.md).

Variables: copies[recipe=i] - how many replicas follow recipe i. Rules, in order:
  add_device_limits   every device class lends at most the devices it has;
  add_user_coverage   the replicas' users add up to exactly the users asked for;
  objective_terms     the named objective terms, optimised one after another (docs/solver.md),
                      then a deterministic tie-breaker.
All non-linear numbers (memory fit, speed, prices) were computed by the candidates step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from planner.candidates.recipes import CandidateSet, Recipe

SPEED_SCALE = 1000  # tokens/s to integer milli-tokens/s
PRICE_SCALE = 1  # whole dollars


@dataclass
class Variables:
    """The decision variables, one line each."""

    copies: dict[int, cp_model.IntVar] = field(default_factory=dict)  # copies[recipe=i]: replicas built from recipe i
    used: dict[int, cp_model.IntVar] = field(default_factory=dict)  # used[recipe=i]: 1 when at least one copy runs
    slowest: cp_model.IntVar | None = None  # slowest_user_speed: the lowest per-user speed of any used recipe


@dataclass
class ObjectiveTerm:
    """One named term of the objective (maximised)."""

    name: str
    weight: int
    expression: cp_model.LinearExpr


def max_copies(recipe: Recipe, candidates: CandidateSet) -> int:
    limit = candidates.request.users // recipe.users
    for cls, devices in recipe.devices_by_class:
        limit = min(limit, candidates.classes[cls].devices // devices)
    return max(0, limit)


def add_copy_variables(model: cp_model.CpModel, candidates: CandidateSet) -> Variables:
    """One integer per recipe, bounded by users and devices, with a used flag."""
    v = Variables()
    for recipe in candidates.recipes:
        bound = max_copies(recipe, candidates)
        v.copies[recipe.index] = model.NewIntVar(0, bound, f"copies[recipe={recipe.index}]")
        v.used[recipe.index] = model.NewBoolVar(f"used[recipe={recipe.index}]")
        model.Add(v.copies[recipe.index] >= 1).OnlyEnforceIf(v.used[recipe.index])
        model.Add(v.copies[recipe.index] == 0).OnlyEnforceIf(v.used[recipe.index].Not())
    return v


def add_device_limits(model: cp_model.CpModel, v: Variables, candidates: CandidateSet) -> None:
    """Every device class lends at most the devices it has."""
    for cls in candidates.classes:
        terms = [devices * v.copies[r.index] for r in candidates.recipes for c, devices in r.devices_by_class if c == cls.index]
        if terms:
            model.Add(sum(terms) <= cls.devices)


def add_user_coverage(model: cp_model.CpModel, v: Variables, candidates: CandidateSet) -> None:
    """The replicas' users add up to exactly the users asked for."""
    model.Add(sum(r.users * v.copies[r.index] for r in candidates.recipes) == candidates.request.users)


def _speed(recipe: Recipe) -> int:
    return int(round(recipe.speed.decode_tokens_per_s_per_user * SPEED_SCALE))


def objective_terms(model: cp_model.CpModel, v: Variables, candidates: CandidateSet) -> list[ObjectiveTerm]:
    """The named objective terms for the requested objective, most important first."""
    recipes = candidates.recipes
    throughput = sum(int(round(r.tokens_per_s * SPEED_SCALE)) * v.copies[r.index] for r in recipes)
    devices = sum(r.devices * v.copies[r.index] for r in recipes)
    top_speed = max((_speed(r) for r in recipes), default=0)
    v.slowest = model.NewIntVar(0, top_speed, "slowest_user_speed")
    for r in recipes:
        model.Add(v.slowest <= _speed(r)).OnlyEnforceIf(v.used[r.index])
    objective = candidates.request.objective
    terms: list[ObjectiveTerm] = []
    if objective == "cost":
        price = sum(int(round((r.price_usd or 0) * PRICE_SCALE)) * v.copies[r.index] for r in recipes)
        terms.append(ObjectiveTerm("cost_usd", -1, price))
    if objective == "devices":
        terms.append(ObjectiveTerm("devices_used", -1, devices))
    if objective == "latency":
        terms.append(ObjectiveTerm("slowest_user_speed", 1, v.slowest))
    terms.append(ObjectiveTerm("total_tokens_per_s", 1, throughput))
    if objective != "devices":
        terms.append(ObjectiveTerm("devices_used", -1, devices))
    return terms


def tie_breaker(v: Variables, candidates: CandidateSet) -> cp_model.LinearExpr:
    """Prefer lower recipe indices, so equal optima always resolve to the same plan."""
    recipes = candidates.recipes
    return sum((len(recipes) - r.index) * v.copies[r.index] for r in recipes)


RULES = (add_device_limits, add_user_coverage)


def build_model(candidates: CandidateSet) -> tuple[cp_model.CpModel, Variables, list[ObjectiveTerm]]:
    """The CP-SAT model: variables, then each rule in RULES, then the objective terms."""
    model = cp_model.CpModel()
    v = add_copy_variables(model, candidates)
    for rule in RULES:
        rule(model, v, candidates)
    return model, v, objective_terms(model, v, candidates)
