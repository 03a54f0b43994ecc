"""What a serving plan can optimise, as a table. The CLI's --objective choices, the CP-SAT
objective, the dominance pruning of candidates, the report's units and the brute-force test
oracle are all derived from it; nothing else names an objective.

Each term has a value per replica layout (a recipe). Summed terms add over the replicas a plan
runs; `min` terms take the worst replica. Terms are optimised lexicographically in the order an
objective lists them, then a fixed tie-breaker, so the same input always gives the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min"]
Aggregate = Literal["sum", "min"]


@dataclass(frozen=True)
class ObjectiveTerm:
    """One named quantity a plan can be judged by."""

    name: str
    direction: Direction
    aggregate: Aggregate  # over the replicas of a plan
    unit: str
    scale: int  # integer units per natural unit inside the solver (milli-tokens/s, whole dollars)
    description: str


TERMS: dict[str, ObjectiveTerm] = {term.name: term for term in (
    ObjectiveTerm("total_tokens_per_s", "max", "sum", "tokens/s", 1000, "decode tokens per second of all users together"),
    ObjectiveTerm("slowest_user_speed", "max", "min", "tokens/s", 1000, "decode tokens per second of the slowest user"),
    ObjectiveTerm("cost_usd", "min", "sum", "USD", 1, "purchase price of the devices the plan uses"),
    ObjectiveTerm("devices_used", "min", "sum", "devices", 1, "devices the plan uses"),
)}

# --objective NAME -> its terms, most important first.
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "throughput": ("total_tokens_per_s", "devices_used"),
    "latency": ("slowest_user_speed", "total_tokens_per_s", "devices_used"),
    "cost": ("cost_usd", "total_tokens_per_s", "devices_used"),
    "devices": ("devices_used", "total_tokens_per_s"),
}

Objective = Literal["throughput", "latency", "cost", "devices"]


def objective_terms(objective: str) -> tuple[ObjectiveTerm, ...]:
    """The terms of an objective, in order."""
    return tuple(TERMS[name] for name in OBJECTIVES[objective])


def is_at_least_as_good(term: ObjectiveTerm, a: float, b: float) -> bool:
    """True when per-replica value `a` is no worse than `b` for `term`."""
    return a >= b if term.direction == "max" else a <= b
