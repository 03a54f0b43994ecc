"""`plan sweep`: one request planned over a grid of users x context (and, optionally, weight
formats and engines) on one set of machines: whether each cell fits, its per-user and total
decode speed, time to first token and capacity, and for each context the largest user count
that fits.

Every cell, and every count tried while looking for the largest, is a verified `plan deploy`
(planner/commands/deploy.py) on the machines loaded once; nothing here estimates on its own.

The largest user count of a context starts from the plans' own capacity (their `max_users` at
that context) and follows it: a plan for that many users is made, and while its own capacity is
larger the count moves up to it; once a plan is full, one more user is tried (then 2, 4, ...
more, as a plan for more users may choose a layout that holds more). It ends when a count fits
and the next does not. Where a count on the way does not fit (a --min-tokens-per-s or --max-ttft
target, or the layouts), bisection between the most that fits and the least that does not finds
the largest. Both steps are bounded and deterministic. The method is "capacity" when the largest
count fills its plan's cache, "bisection" when something else binds first."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from planner.commands.args import DeployArgs
from planner.commands.deploy import load_cluster, run_deploy
from planner.errors import InputError
from planner.limits import MAX_CONTEXT_TOKENS, MAX_USERS
from planner.loaders.engines import find_engine
from planner.loaders.formats import resolve_weight_format
from planner.schemas.inventory import Cluster

MAX_SWEEP_CELLS = 64  # users x contexts x weights x engines
MAX_CAPACITY_STEPS = 24  # deploys spent following the plans' capacity up, per context
MAX_BISECTION_STEPS = 24  # more than log2(MAX_USERS)

SweepFormat = Literal["table", "csv", "json", "yaml"]
# Failures of one combination of the extra axes, reported as a cell that does not fit.
COMBINATION_FIELDS = ("--engine", "--engine-version", "--weights", "--kv-cache")


def _split(value: object, what: str, example: str) -> object:
    if value is None:
        return ()
    if not isinstance(value, str):
        return value
    parts = [p.strip() for p in value.split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError(f"expected {what} like {example}, got {value[:60]!r}")
    return tuple(parts)


def _counts(value: object, what: str, example: str, high: int) -> object:
    parts = _split(value, what, example)
    if not isinstance(parts, tuple) or not all(isinstance(p, str) for p in parts):
        return parts
    if not all(p.isdigit() and len(p) <= 10 and 1 <= int(p) <= high for p in parts):
        raise ValueError(f"expected {what} from 1 to {high:,} like {example}, got {str(value)[:60]!r}")
    return tuple(int(p) for p in parts)


class SweepArgs(DeployArgs):
    """`plan sweep`: `plan deploy`'s request, over lists of users and contexts (and weights, engines)."""

    users_list: tuple[Annotated[int, Field(ge=1, le=MAX_USERS)], ...] = Field(
        min_length=1, description="Concurrent users per cell, ascending.")
    contexts: tuple[Annotated[int, Field(ge=1, le=MAX_CONTEXT_TOKENS)], ...] = Field(
        min_length=1, description="Tokens per user per cell, ascending.")
    weights_list: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(
        (), description="Weight formats to sweep (empty: the checkpoint's).")
    engines: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = Field(
        (), description="Engines to sweep, each NAME or NAME@VERSION (empty: chosen by the rule).")
    fmt: SweepFormat = "table"  # type: ignore[assignment]

    @field_validator("users_list", mode="before")
    @classmethod
    def _users(cls, value: object) -> object:
        return _counts(value, "user counts", "1,8,32,64", MAX_USERS)

    @field_validator("contexts", mode="before")
    @classmethod
    def _contexts(cls, value: object) -> object:
        return _counts(value, "context lengths in tokens", "4096,32768", MAX_CONTEXT_TOKENS)

    @field_validator("weights_list", mode="before")
    @classmethod
    def _weights(cls, value: object) -> object:
        return _split(value, "weight formats", "q4_k_m,q8_0,bf16")

    @field_validator("engines", mode="before")
    @classmethod
    def _engines(cls, value: object) -> object:
        return _split(value, "engines", "vllm,sglang")

    @field_validator("users_list", "contexts", "weights_list", "engines", mode="after")
    @classmethod
    def _ordered(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        """Counts ascending, names in the order given; each once."""
        unique = tuple(dict.fromkeys(value))
        return tuple(sorted(unique)) if unique and isinstance(unique[0], int) else unique

    @model_validator(mode="after")
    def _check_grid(self) -> SweepArgs:
        cells = len(self.users_list) * len(self.contexts) * max(1, len(self.weights_list)) * max(1, len(self.engines))
        if cells > MAX_SWEEP_CELLS:
            raise ValueError(f"the grid has {cells} cells (--users x --context x --weights x --engine); at most "
                             f"{MAX_SWEEP_CELLS}: give fewer values")
        if self.mode != "serve":
            raise ValueError("plan sweep plans serving only")
        return self


def _engine_update(engine: str | None, version: str | None) -> dict[str, Any]:
    """`vllm@0.10.2` (or `vllm==0.10.2`) is engine vllm at version 0.10.2, as --engine reads it."""
    if engine is None:
        return {}
    for separator in ("==", "@"):
        if separator in engine:
            name, given = (part.strip() for part in engine.split(separator, 1))
            if version not in (None, given):
                raise InputError(f"{engine} and --engine-version {version} disagree", field="--engine")
            return {"engine": name, "engine_version": given or None}
    return {"engine": engine}


def _reason(plan: Any) -> tuple[str, list[str]]:
    """The first line of why a cell has no plan, and the layouts' own reasons under it (at most four)."""
    if plan.verification:
        return f"the verifier found: {plan.verification[0]}", list(plan.verification[1:5])
    lines = [line for line in plan.explanation if line.strip()]
    if not lines:
        return f"no plan (solver: {plan.solver.status.value})", []
    why = []
    for line in lines[1:]:
        if not line.startswith("  - "):
            break  # the smallest changes that would fit follow; the sweep's own rows show those
        why.append(line.removeprefix("  - "))
    # The summary counts memory over all devices; the first layout's own reason says what binds.
    return (f"{lines[0].strip().rstrip('.')}; first layout: {why[0]}" if why else lines[0].strip()), why[:4]


def _row(plan: Any, code: int, cluster: Cluster) -> dict[str, Any]:
    fits = code == 0
    reason, why = (None, []) if fits else _reason(plan)
    performance, capacity = plan.performance, plan.capacity
    return {
        "users": plan.request.users, "context": plan.request.context, "weights": plan.request.precision.weights,
        "engine": plan.request.engine.id, "fits": fits,
        "per_user_tokens_per_s": performance.decode_tokens_per_s_per_user if fits else None,
        "tokens_per_s": performance.decode_tokens_per_s_total if fits else None,
        "max_users": capacity.max_users if fits else None,
        "ttft_s": performance.time_to_first_token_s if fits else None,
        "replicas": len(plan.replicas) if fits else 0,
        "devices_used": len(cluster.devices) - len(plan.unused_devices) if fits else 0,
        "status": plan.solver.status.value, "reason": reason, "why": why,
        "kv_cache": plan.request.precision.kv_cache, "engine_version": plan.request.engine.version,
    }


def _refused(err: InputError, users: int, context: int, weights: str | None, engine: str | None) -> dict[str, Any]:
    """A combination of the extra axes no engine here runs: a cell that does not fit, and why."""
    return {"users": users, "context": context, "weights": weights or "default", "engine": engine or "auto", "fits": False,
            "per_user_tokens_per_s": None, "tokens_per_s": None, "max_users": None, "ttft_s": None, "replicas": 0,
            "devices_used": 0, "status": "refused", "reason": err.detail, "why": [], "kv_cache": None, "engine_version": None}


class _Planner:
    """Verified deploys on the sweep's machines, each (users, context, weights, engine) planned once."""

    def __init__(self, args: SweepArgs, cluster: Cluster, share_s: float, refusable: bool) -> None:
        self.args, self.cluster, self.share_s, self.refusable = args, cluster, share_s, refusable
        self.done: dict[tuple[int, int, str | None, str | None], dict[str, Any]] = {}

    def plan(self, users: int, context: int, weights: str | None, engine: str | None) -> dict[str, Any]:
        key = (users, context, weights, engine)
        if key not in self.done:
            update = {"users": users, "context": context, "weights": weights if weights is not None else self.args.weights,
                      "time_limit": self.share_s, **_engine_update(engine, self.args.engine_version)}
            try:
                result = run_deploy(self.args.model_copy(update=update), cluster=self.cluster)
                self.done[key] = _row(result.plan, result.exit_code, self.cluster)
            except InputError as err:
                if not (self.refusable and err.field in COMBINATION_FIELDS):
                    raise
                self.done[key] = _refused(err, users, context, weights, engine)
        return self.done[key]


def _largest(known: dict[int, dict[str, Any]], plan_at: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """The largest user count that fits at one context, from the cells planned there (users -> row)."""
    known = dict(known)
    grid = set(known)

    def at(users: int) -> dict[str, Any]:
        if users not in known:
            known[users] = plan_at(users)
        return known[users]

    fitting = [u for u, r in known.items() if r["fits"]]
    if not fitting and min(known) > 1 and at(1)["fits"]:
        fitting = [1]
    if not fitting:
        return {"largest_users": None, "method": "none", "capacity_users": None, "row": None, "deploys": len(known) - len(grid),
                "note": "not even 1 user fits"}
    lo = max(fitting)
    above = [u for u, r in known.items() if not r["fits"] and u > lo]
    hi = min(above) if above else None
    cap = max(known[u]["max_users"] for u in fitting)
    between: tuple[int, int] | None = None  # where bisection started: fits, does not
    step = 1  # beyond a full plan: one more user, then 2, 4, ... more (a plan's capacity may grow with its users)
    for _ in range(MAX_CAPACITY_STEPS):
        if (hi is not None and hi - lo <= 1) or lo >= MAX_USERS:
            break
        if cap > lo:
            probe = cap
        else:
            probe, step = lo + step, step * 2
        probe = min(probe, MAX_USERS)
        if hi is not None and probe >= hi:
            break
        row = at(probe)
        if row["fits"]:
            lo, cap = probe, max(cap, row["max_users"])
        else:
            hi = probe
    for _ in range(MAX_BISECTION_STEPS):
        if hi is None or hi - lo <= 1:
            break
        between = between or (lo, hi)
        mid = (lo + hi) // 2
        if at(mid)["fits"]:
            lo = mid
        else:
            hi = mid
    row = known[lo]
    deploys = len(known) - len(grid)
    if lo >= MAX_USERS:
        method, note = "limit", f"{_say_users(MAX_USERS)} (the planner's limit)"
    elif hi is None or hi - lo > 1:
        method, note = "unconfirmed", f"{_say_users(lo)}; the search stopped after {deploys} deploys without a count that does not"
    elif row["max_users"] == lo:
        method, note = "capacity", f"{_say_users(lo)}, the plan's own capacity at this context, and {hi:,} do not"
    else:
        method = "bisection"
        note = (f"{_say_users(lo)} and {hi:,} do not" + (f" (bisection between {between[0]:,} and {between[1]:,})" if between else "")
                + f", though the plan's cache holds {row['max_users']:,}: a target or the layouts bind")
    return {"largest_users": lo, "method": method, "capacity_users": row["max_users"], "row": row, "deploys": deploys,
            "note": note}


def run_sweep(args: SweepArgs, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Plan every cell of the grid, then the largest user count of each context.

    --time-limit is shared equally between the cells; each count tried for the largest users
    gets one cell's share. `progress`, when given, is called once per cell."""
    for name in args.weights_list or ():
        if name != "checkpoint":
            resolve_weight_format(name)  # a typo is exit 2 with the nearest name, not a row of "no"
    for name in args.engines or ():
        find_engine(name.split("@")[0].split("==")[0], kind="serve")
    cluster = load_cluster(args)
    weights_axis: tuple[str | None, ...] = args.weights_list or (None,)
    engine_axis: tuple[str | None, ...] = args.engines or (None,)
    combos = [(w, e) for w in weights_axis for e in engine_axis]
    cells = len(combos) * len(args.contexts) * len(args.users_list)
    planner = _Planner(args, cluster, max(args.time_limit / cells, 0.1), refusable=len(combos) > 1)
    rows: list[dict[str, Any]] = []
    largest: list[dict[str, Any]] = []
    for combo, (weights, engine) in enumerate(combos):
        for context in args.contexts:
            at_context: dict[int, dict[str, Any]] = {}
            for users in args.users_list:
                row = {**planner.plan(users, context, weights, engine), "combo": combo}  # which weights x engine column
                rows.append(row)
                at_context[users] = row
                if progress is not None:
                    speed = (f"fits, {row['per_user_tokens_per_s']:,.1f} tokens/s per user" if row["fits"]
                             else "does not fit")
                    progress(f"sweep {len(rows)}/{cells}: {users:,} user{'s' if users > 1 else ''} at {context:,} tokens "
                             f"({row['weights']}, {row['engine']}): {speed}")
            found = _largest(at_context, lambda u, c=context, w=weights, e=engine: planner.plan(u, c, w, e))
            best = found.pop("row")
            largest.append({"combo": combo, 
                "context": context, "weights": best["weights"] if best else at_context[args.users_list[0]]["weights"],
                "engine": best["engine"] if best else at_context[args.users_list[0]]["engine"], **found,
                "per_user_tokens_per_s": best["per_user_tokens_per_s"] if best else None,
                "tokens_per_s": best["tokens_per_s"] if best else None,
            })
    return {
        "kind": "sweep", "model": args.model, "inventory": cluster.name,
        "axes": {"users": list(args.users_list), "context": list(args.contexts),
                 "weights": list(dict.fromkeys(r["weights"] for r in rows)),
                 "engine": list(dict.fromkeys(r["engine"] for r in rows))},
        "targets": {"min_tokens_per_s": args.min_tokens_per_s, "max_ttft_s": args.max_ttft, "objective": args.objective},
        "rows": rows, "largest_users": largest,
        "method": "each cell is a verified plan deploy; the largest users of a context follow the plans' own capacity "
                  "(max_users) until a count fits and one more does not, by bisection where a count on the way fails",
    }


def _say_users(count: int, verb: str = "") -> str:
    """'1 user fits', '8 users fit'; with verb "do not": '1 user does not', '8 users do not'."""
    if verb == "do not":
        return f"{count:,} user does not" if count == 1 else f"{count:,} users do not"
    return f"{count:,} user fits" if count == 1 else f"{count:,} users fit"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def to_sweep_text(data: dict[str, Any]) -> str:
    """The sweep as grids, users down and context across, one block per weights and engine."""
    lines = [f"Sweep: {data['model']} on {data['inventory']}"]
    targets = data["targets"]
    wanted = [f"at least {targets['min_tokens_per_s']:g} tokens/s per user" if targets["min_tokens_per_s"] else "",
              f"first token within {targets['max_ttft_s']:g} s" if targets["max_ttft_s"] else ""]
    if any(wanted):
        lines[0] += "; every user " + " and ".join(w for w in wanted if w)
    contexts = data["axes"]["context"]
    for combo in dict.fromkeys(r["combo"] for r in data["rows"]):
        rows = [r for r in data["rows"] if r["combo"] == combo]
        weights, engine = rows[0]["weights"], rows[0]["engine"]
        cell = {(r["users"], r["context"]): r for r in rows}
        version = next((r["engine_version"] for r in rows if r["engine_version"]), None)
        lines += ["", f"{weights} weights, {engine}{f' {version}' if version else ''}: per-user decode tokens/s under load "
                      "(total tokens/s); 'no' where it does not fit"]
        table = [["users \\ context", *[f"{c:,}" for c in contexts]]]
        for users in data["axes"]["users"]:
            table.append([f"{users:,}", *[f"{_number(cell[users, c]['per_user_tokens_per_s'])} "
                                          f"({_number(cell[users, c]['tokens_per_s'], 0)})" if cell[users, c]["fits"] else "no"
                                          for c in contexts]])
        found = {e["context"]: e for e in data["largest_users"] if e["combo"] == combo}
        table.append(["largest users", *["-" if found[c]["largest_users"] is None else f"{found[c]['largest_users']:,}"
                                         for c in contexts]])
        lines += _table(table)
        lines.append("Largest users, by context:")
        for c in contexts:
            entry = found[c]
            lines.append(f"  {c:,} tokens: {entry['note']} [{entry['method']}; {entry['deploys']} more deploys]")
            first = next((r for r in rows if r["context"] == c and not r["fits"]), None)
            if first is not None:
                lines.append(f"    {_say_users(first['users'], 'do not')} fit: {first['reason']}")
                lines += [f"      - {why}" for why in first["why"]]
    return "\n".join(lines)


CSV_COLUMNS = ("users", "context", "weights", "engine", "fits", "status", "per_user_tokens_per_s", "tokens_per_s", "ttft_s",
               "max_users", "replicas", "devices_used", "kv_cache", "engine_version", "reason")


def to_sweep_csv(data: dict[str, Any]) -> str:
    """One line per cell, in the grid's order, after a header line."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in data["rows"]:
        writer.writerow({k: ("true" if v else "false") if isinstance(v, bool) else ("" if v is None else v)
                         for k, v in row.items()})
    return out.getvalue().rstrip("\n")


def plan_largest_cell(args: SweepArgs, data: dict[str, Any]) -> tuple[dict[str, Any] | None, Cluster]:
    """The plan document of the most users found to fit at the sweep's first context (for the
    report's plan and pictures), planned again, and the sweep's machines."""
    cluster = load_cluster(args)
    best = next((x for x in data["largest_users"] if x["largest_users"]), None)
    if best is None:
        return None, cluster
    weights = None if best["weights"] == "default" else best["weights"]
    engine = None if best["engine"] == "auto" else best["engine"]
    update = {"users": best["largest_users"], "context": best["context"], "weights": weights if weights is not None else args.weights,
              "time_limit": max(args.time_limit / max(1, len(data["rows"])), 0.1), **_engine_update(engine, args.engine_version)}
    return run_deploy(args.model_copy(update=update), cluster=cluster).data, cluster
