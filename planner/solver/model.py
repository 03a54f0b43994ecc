"""The serving deployment as a CP-SAT model that reads like its specification (docs/solver.md).

Variables: copies[recipe=i] - how many replicas follow recipe i. Rules, in order:
  add_device_limits   every device class lends at most the devices it has;
  add_user_coverage   the replicas' users add up to exactly the users asked for;
  add_replica_count   with --data-parallel-size pinned, exactly that many replicas;
  add_machine_packing every run of stages a replica keeps in one machine fits one machine
                      (only where counting devices is not enough: candidates/packing.py);
  build_objective     the request's objective terms (planner/schemas/objectives.py), optimised
                      one after another, then a deterministic tie-breaker.
All non-linear numbers (memory fit, speed, prices) were computed by the candidates step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from planner.candidates.packing import classes_to_pack, run_sizes
from planner.candidates.recipes import CandidateSet, Recipe
from planner.schemas.objectives import ObjectiveTerm, objective_terms


@dataclass
class Variables:
    """The decision variables, one line each."""

    copies: dict[int, cp_model.IntVar] = field(default_factory=dict)  # copies[recipe=i]: replicas built from recipe i
    used: dict[int, cp_model.IntVar] = field(default_factory=dict)  # used[recipe=i]: 1 when at least one copy runs
    worst: dict[str, cp_model.IntVar] = field(default_factory=dict)  # worst[term=t]: a min-aggregated term's value
    # runs[class=c][size=s][machine=m]: runs of s devices that machine m of class c holds
    runs: dict[int, dict[int, list[cp_model.IntVar]]] = field(default_factory=dict)


@dataclass
class Term:
    """One objective term as a CP-SAT expression to maximise (minimised terms are negated)."""

    spec: ObjectiveTerm
    expression: cp_model.LinearExpr


def max_copies(recipe: Recipe, candidates: CandidateSet) -> int:
    """The most copies of a recipe the users and devices allow."""
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


def add_replica_count(model: cp_model.CpModel, v: Variables, candidates: CandidateSet) -> None:
    """With --data-parallel-size pinned, exactly that many replicas run."""
    if candidates.request.data_parallel_size is not None:
        model.Add(sum(v.copies.values()) == candidates.request.data_parallel_size)


def add_machine_packing(model: cp_model.CpModel, v: Variables, candidates: CandidateSet) -> None:
    """Every run of stages a replica keeps in one machine fits one machine: per class, each
    machine's runs add up to no more than its devices, and the runs of each size are exactly those
    the chosen copies bring. The machines of a class are identical, so they are taken in order of
    load (a symmetry the solver need not explore)."""
    counts = [run_sizes(r) for r in candidates.recipes]
    for cls, sizes in classes_to_pack(candidates).items():
        device_class = candidates.classes[cls]
        per_machine = device_class.devices_per_node
        machines = range(len(device_class.nodes))
        grid = {s: [model.NewIntVar(0, per_machine // s, f"runs[class={cls}][size={s}][machine={m}]") for m in machines]
                for s in sizes}
        loads = [sum(s * grid[s][m] for s in sizes) for m in machines]
        for m in machines:
            model.Add(loads[m] <= per_machine)
            if m:
                model.Add(loads[m - 1] >= loads[m])
        for s in sizes:
            brought = [counts[r.index][cls][s] * v.copies[r.index] for r in candidates.recipes
                       if counts[r.index].get(cls, {}).get(s)]
            model.Add(sum(grid[s]) == sum(brought))
        v.runs[cls] = grid


def scaled_value(recipe: Recipe, term: ObjectiveTerm) -> int:
    """A recipe's value of `term` in the solver's integer units (an unknown value counts 0)."""
    value = recipe.term_value(term.name)
    return int(round((value or 0.0) * term.scale))


def _term_expression(model: cp_model.CpModel, v: Variables, candidates: CandidateSet, term: ObjectiveTerm) -> cp_model.LinearExpr:
    recipes = candidates.recipes
    sign = 1 if term.direction == "max" else -1
    if term.aggregate == "sum":
        return sign * sum(scaled_value(r, term) * v.copies[r.index] for r in recipes)
    values = [scaled_value(r, term) for r in recipes]
    low, high = min(values, default=0), max(values, default=0)
    worst = model.NewIntVar(low, high, f"worst[term={term.name}]")
    for r, value in zip(recipes, values):
        if term.direction == "max":
            model.Add(worst <= value).OnlyEnforceIf(v.used[r.index])
        else:
            model.Add(worst >= value).OnlyEnforceIf(v.used[r.index])
    v.worst[term.name] = worst
    return sign * worst


def build_objective(model: cp_model.CpModel, v: Variables, candidates: CandidateSet) -> list[Term]:
    """The request's objective terms as expressions to maximise, most important first."""
    return [Term(spec, _term_expression(model, v, candidates, spec)) for spec in objective_terms(candidates.request.objective)]


def tie_breaker(v: Variables, candidates: CandidateSet) -> cp_model.LinearExpr:
    """Prefer lower recipe indices, so equal optima always resolve to the same plan."""
    recipes = candidates.recipes
    return sum((len(recipes) - r.index) * v.copies[r.index] for r in recipes)


RULES = (add_device_limits, add_user_coverage, add_replica_count, add_machine_packing)


def build_model(candidates: CandidateSet) -> tuple[cp_model.CpModel, Variables, list[Term]]:
    """The CP-SAT model: variables, then each rule in RULES, then the objective terms."""
    model = cp_model.CpModel()
    v = add_copy_variables(model, candidates)
    for rule in RULES:
        rule(model, v, candidates)
    return model, v, build_objective(model, v, candidates)
