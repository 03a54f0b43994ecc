"""`plan whatif` without machines: the cheapest machines to buy (or rent) for a request, chosen
from a market of templates (planner/loaders/market.py), each answer a verified plan.

The search, exact within what it is offered (docs/whatif.md):
1. Each template, with each weight format and engine asked for, gets a lower bound on its cost: the
   fewest machines whose memory holds one copy of the weights and every user's KV cache, times its
   price.
2. Templates are taken cheapest bound first; for each, CP-SAT finds the fewest machines of it alone
   that meet the targets (planner/commands/buy_search.py). A template whose bound is not below the
   best answer so far cannot win alone and is not searched alone.
3. Every template whose machines for one copy of the weights cost less than the best gets layouts
   for a share of the users, and one joint CP-SAT model per weight format and engine
   (planner/solver/market.py) chooses how many of each to buy with the replicas they run.
4. The winner, the cheapest answer of each template searched and of each kind of machine, is
   re-planned by `plan deploy` on exactly the machines bought and checked by the verifier.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from planner.commands.args import DeployArgs
from planner.commands.buy_search import (
    FOUND,
    Option,
    build_offer,
    build_option,
    engine_list,
    machines_limit,
    request_for,
    search_alone,
    select_templates,
    template_devices,
    users_for,
)
from planner.commands.deploy import plan_reason, plan_speed_figures, run_deploy
from planner.commands.formats import split_weight_list
from planner.errors import InputError
from planner.estimate.cost import (
    estimate_price_age_months,
)
from planner.loaders.market import load_market_catalog, load_market_file
from planner.loaders.shorthand import build_shorthand_cluster
from planner.schemas.inventory import Cluster
from planner.schemas.market import CostInputs
from planner.schemas.plan import SolveStatus
from planner.solver.market import MarketChoice, Offer, solve_market

Progress = Callable[[str], None]
MAX_ROWS = 8  # cheapest answers shown, one per template
VERIFY_S = 10.0  # seconds for re-planning each answer on the machines bought
SEARCH_SHARE = 0.7  # of --time-limit, for the search of each template alone


def _fewest_for_rate(args: DeployArgs, rate: float, parts: list[tuple[Option, int]], time_limit: float) -> list[tuple[Option, int]]:
    """A single template bought for a request rate was sized at the per-user speed floor; its
    machines may run faster than that, so fewer may sustain the rate: take machines away while
    `plan deploy`'s own rate search (Little's law at the plan's latency) still finds a plan that
    meets it."""
    if len(parts) != 1:
        return parts
    option, machines = parts[0]
    rate_args = args.model_copy(update={"request_rate": rate, "explicit": args.explicit - {"users"}})

    def sustains(count: int) -> bool:
        trial = _deploy(rate_args, [(option, count)], time_limit)
        return trial.exit_code == 0 and (trial.plan.performance.requests_per_s or 0.0) >= rate * 0.999

    low, high = 0, machines  # low fails (or is none), high is the answer so far
    while high - low > 1:
        middle = (low + high) // 2
        if sustains(middle):
            high = middle
        else:
            low = middle
    return [(option, high)]


def _deploy(args: DeployArgs, parts: list[tuple[Option, int]], time_limit: float) -> Any:
    cluster = build_answer_cluster({"templates": [{"machines": n, "devices": o.template.devices, "interconnect": o.template.interconnect,
                                                   "network": o.template.network} for o, n in parts]})
    return run_deploy(request_for(args, parts[0][0]).model_copy(update={"time_limit": max(time_limit, 0.5), "objective": "throughput"}),
                      cluster=cluster, replicas_elsewhere=len(parts) > 1)


def _verify(args: DeployArgs, parts: list[tuple[Option, int]], time_limit: float) -> dict[str, Any]:
    """`plan deploy` on exactly the machines bought (one template, or a mix), verified."""
    result = _deploy(args, parts, time_limit)
    plan = result.plan
    fits = result.exit_code == 0
    return {
        "verified": fits and not plan.verification, "status": plan.solver.status.value, "reason": plan_reason(plan, fits),
        "weights": plan.request.precision.weights, "engine": plan.request.engine.id,
        "replicas": len(plan.replicas) if fits else 0, **plan_speed_figures(plan, fits),
        "plan": result.data,
    }


def _row(parts: list[tuple[Option, int]], choice: MarketChoice, checked: dict[str, Any]) -> dict[str, Any]:
    cost = sum((o.cost.usd or 0.0) * n for o, n in parts)
    return {
        "configuration": " + ".join(f"{n} of {o.template.id}" for o, n in parts),
        "templates": [{"id": o.template.id, "name": o.template.name, "kind": o.template.kind, "machines": n,
                       "devices": o.template.devices, "interconnect": o.template.interconnect, "network": o.template.network,
                       "machine_cost": round(o.cost.usd or 0.0, 4), "cost_parts": list(o.cost.parts)} for o, n in parts],
        "machines": sum(n for _, n in parts), "devices": sum(n * len(template_devices(o.template)) for o, n in parts),
        "cost": round(cost, 4), "solver": choice.status.value, **{k: v for k, v in checked.items() if k != "plan"},
        "plan": checked["plan"],
    }


def build_answer_cluster(row: dict[str, Any]) -> Cluster:
    """The machines of one answer (a row of the report), as its plan was made on them."""
    parts = row["templates"]
    if len(parts) == 1:
        t = parts[0]
        if t["machines"] == 1:
            return build_shorthand_cluster(gpus=t["devices"], interconnect=t["interconnect"])
        return build_shorthand_cluster(nodes=f"{t['machines']}x({t['devices']})", interconnect=t["interconnect"],
                                       network=t["network"])
    # A mix: each template's machines as a group; their links in common where they share them.
    interconnects = {t["interconnect"] for t in parts}
    networks = {t["network"] for t in parts}
    return build_shorthand_cluster(nodes="+".join(f"{t['machines']}x({t['devices']})" for t in parts),
                                   interconnect=interconnects.pop() if len(interconnects) == 1 else None,
                                   network=networks.pop() if len(networks) == 1 else None)


def mark_pareto_front(rows: list[dict[str, Any]]) -> None:
    """on_front: no other row is at least as cheap, as fast in all and as fast per user, and better in one."""
    def better(a: dict, b: dict) -> bool:
        keys = (("cost", -1), ("tokens_per_s", 1), ("tokens_per_s_per_user", 1))
        pairs = [(a[k] * s, b[k] * s) for k, s in keys]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    placed = [r for r in rows if r.get("tokens_per_s") is not None]
    for r in rows:
        r["on_front"] = r in placed and not any(better(o, r) for o in placed if o is not r)


def run_buy(args: Any, *, progress: Progress | None = None, today: datetime.date | None = None) -> tuple[dict[str, Any], int]:
    """The cheapest configurations that serve the request, and the exit code (0 found, 1 none)."""
    start = time.perf_counter()
    deadline = start + args.time_limit
    say = progress or (lambda text: None)
    today = today or datetime.date.today()
    inputs = CostInputs(basis=args.cost, years=args.years, usd_per_kwh=args.usd_per_kwh, utilization=args.utilization)
    if args.cost == "tco" and args.usd_per_kwh is None:
        raise InputError("--cost tco needs --usd-per-kwh (the electricity price)", field="--usd-per-kwh")
    if args.cost != "tco" and args.usd_per_kwh is not None:
        raise InputError("--usd-per-kwh is for --cost tco (purchase and hourly costs have no electricity)", field="--usd-per-kwh")
    templates = select_templates(load_market_file(args.market) if args.market else load_market_catalog(), args.templates)
    weights_list = split_weight_list(args.weights)
    users, notes = users_for(args)
    plan_args = args.model_copy(update={"request_rate": None, "users": users, "explicit": args.explicit - {"request_rate"}})
    seen: dict[tuple, tuple[int, int] | str] = {}
    engines = engine_list(args)
    options = [build_option(plan_args, t, w, inputs, users, seen, e) for e in engines for w in weights_list for t in templates]
    priced = sorted((o for o in options if o.why_not is None), key=lambda o: (o.bound_usd, o.key))
    say(f"{len(priced)} of {len(options)} templates priced and able to run the request; searching cheapest first")
    best = math.inf
    search_deadline = start + SEARCH_SHARE * args.time_limit
    # With --template the user asked about those templates: each gets its own cheapest answer.
    prune = not args.templates
    for k, option in enumerate(priced, 1):
        if prune and option.bound_usd >= best:
            option.why_not = f"at least {option.bound_usd:,.0f} for {option.machines_low} machine(s), no cheaper"
            continue
        if time.perf_counter() > search_deadline:
            option.why_not = "not searched: the time limit came first"
            continue
        search_alone(plan_args, option, users, best if prune else math.inf, machines_limit(option, args), search_deadline)
        if option.alone is not None and option.alone.cost_usd is not None:
            best = min(best, option.alone.cost_usd)
        say(f"[{k}/{len(priced)}] {option.key}: " + (f"{sum(option.alone.bought.values())} machine(s), {option.alone.cost_usd:,.2f}"
                                                     if option.alone else option.why_not or "no answer"))
    if prune:
        # The cheapest of each kind of machine too (servers, workstations, Macs, cloud), so the
        # answer compares them; the joint model's proof does not depend on these.
        for kind in ("server", "workstation", "desktop", "cloud"):
            of_kind = [o for o in priced if o.template.kind == kind]
            if not of_kind or any(o.alone is not None for o in of_kind):
                continue
            kind_best = math.inf
            for option in of_kind:
                if option.bound_usd >= kind_best or time.perf_counter() > search_deadline:
                    break
                if option.built is not None and option.alone is None and option.why_not and "not less than" not in option.why_not:
                    continue  # searched already: no answer alone
                option.why_not = None
                search_alone(plan_args, option, users, kind_best, machines_limit(option, args), search_deadline)
                if option.alone is not None and option.alone.cost_usd is not None:
                    kind_best = option.alone.cost_usd
                    say(f"cheapest {kind}: {option.key}, {option.alone.cost_usd:,.2f}")
    cut_short = any(o.why_not == "not searched: the time limit came first" or o.cut_short for o in priced)
    # A template not searched alone (its bound for everyone was too high) may still serve a share
    # of the users in a mix: build it at the most machines that could still be cheaper than the best.
    for option in priced:
        limit = machines_limit(option, args)
        price = option.cost.usd or 0.0
        if option.built is not None or option.alone is not None or (option.why_not or "").startswith("too slow"):
            continue
        count = limit if not math.isfinite(best) else min(limit, math.ceil(best / price) - 1 if price > 0 else limit)
        if count < option.machines_one or price * option.machines_one >= best:
            continue
        if time.perf_counter() > search_deadline:
            option.cut_short = True
            continue
        option.built = build_offer(plan_args, option, count, users, search_deadline)
        option.cut_short = option.cut_short or option.built.candidates.stopped_early
    # The joint model: every template that could still be part of something cheaper than the best.
    pool = []
    for option in priced:
        price = option.cost.usd or 0.0
        if option.built is None or not option.built.candidates.recipes or price > best:
            continue
        limit = option.built.machines
        if option.alone is not None:
            limit = min(limit, sum(option.alone.bought.values()))
        if math.isfinite(best):
            limit = min(limit, int(best / price + 1e-9))
        if limit > 0:
            pool.append((option, Offer(option.key, option.built.candidates, limit, price)))
    # One joint model per weight format: a replica's machines all run one format, and the answer is re-planned in it.
    formats = list(dict.fromkeys((option.weights, option.engine) for option, _ in pool)) or [(None, None)]
    say(f"joint model over {len(pool)} template(s), {len(formats)} weight format and engine pair(s)")
    joints = []
    for weights, engine in formats:
        share = max(0.5, (deadline - time.perf_counter() - 0.2 * args.time_limit) / len(formats))
        joints.append(solve_market([o for option, o in pool if (option.weights, option.engine) == (weights, engine)], users,
                                   time_limit_s=share))
    found_joints = [j for j in joints if j.status in FOUND]
    joint = min(found_joints, key=lambda j: (j.cost_usd, sorted(j.bought.items()))) if found_joints else (
        joints[0] if joints else solve_market([], users))
    if found_joints and not all(j.status in (SolveStatus.OPTIMAL, SolveStatus.INFEASIBLE) for j in joints):
        joint = replace(joint, status=SolveStatus.FEASIBLE)  # a format's model was not solved to the end
    by_key = {o.key: o for o in options}
    rows: list[dict[str, Any]] = []
    # A fixed time per plan (not what happens to be left), so the plans, which record it, are the same every run.
    verify_s = VERIFY_S
    check_args = plan_args
    if args.request_rate is not None:
        check_args = args.model_copy(update={"explicit": args.explicit - {"users"}})

    def checked(parts: list[tuple[Option, int]]) -> tuple[list[tuple[Option, int]], dict[str, Any]]:
        if args.request_rate is not None:
            parts = _fewest_for_rate(plan_args, args.request_rate, parts, verify_s)
        return parts, _verify(check_args, parts, verify_s)

    winner = None
    if joint.status in FOUND:
        parts = [(by_key[k], n) for k, n in joint.bought.items()]
        say("verifying the cheapest: " + " + ".join(f"{n} of {o.key}" for o, n in parts))
        parts, result = checked(parts)
        winner = _row(parts, joint, result)
        rows.append(winner)
    for option in sorted((o for o in priced if o.alone is not None), key=lambda o: (o.alone.cost_usd, o.key))[:MAX_ROWS]:
        parts = [(option, sum(option.alone.bought.values()))]
        if winner is not None and len(joint.bought) == 1 and option.key in joint.bought and joint.bought[option.key] == parts[0][1]:
            continue
        say(f"verifying {parts[0][1]} of {option.key}")
        parts, result = checked(parts)
        rows.append(_row(parts, option.alone, result))
    rows.sort(key=lambda r: (not r["verified"], r["cost"], r["configuration"]))
    mark_pareto_front(rows)
    excluded = [{"template": o.key, "reason": o.why_not} for o in options
                if o.alone is None and o.why_not and o.key not in joint.bought]
    shown = {t["id"] for r in rows for t in r["templates"]}
    dates = sorted({d for o in options if o.template.id in shown and o.cost.usd is not None for d in o.cost.dates})
    proof = _proof(joint, best, cut_short, args.max_machines)
    if winner is not None and not winner["verified"]:
        proof = {**proof, "status": "cheapest by the purchase model, but plan deploy could not re-plan it on those machines "
                                    "(the verified rows below are the answers)", "gap": None}
    unit = "USD per hour" if args.cost == "hourly" else "USD"
    report = {
        "kind": "buy", "model": args.model, "users": users, "request_rate": args.request_rate, "notes": notes,
        "targets": {"min_tokens_per_s": args.min_tokens_per_s, "max_ttft_s": args.max_ttft, "context": args.context,
                    "prompt_tokens": args.prompt_tokens, "output_tokens": args.output_tokens},
        "cost": {"basis": args.cost, "unit": unit, "years": args.years if args.cost == "tco" else None,
                 "usd_per_kwh": args.usd_per_kwh if args.cost == "tco" else None,
                 "utilization": args.utilization if args.cost == "tco" else None,
                 "hours_per_year": inputs.hours_per_year if args.cost == "tco" else None},
        "market": {"source": args.market or "built-in market (planner/catalog/market.yaml and the priced hardware catalog)",
                   "templates": len(templates), "options": len(options), "searched": sum(1 for o in priced if o.built),
                   "max_machines": args.max_machines},
        "proof": proof, "configurations": rows, "excluded": excluded,
        "prices": {"dated": dates, "oldest_months": max((estimate_price_age_months(d, today) for d in dates), default=None)},
    }
    return report, 0 if rows and any(r["verified"] for r in rows) else 1


def _proof(joint: MarketChoice, best: float, cut_short: bool, max_machines: int) -> dict[str, Any]:
    scope = f"among the templates offered, at most {max_machines} machines of each, replicas on one template each"
    if joint.status == SolveStatus.OPTIMAL and not cut_short:
        return {"status": "proven cheapest", "scope": scope, "bound": joint.bound_usd, "gap": 0.0}
    if joint.status in FOUND:
        bound = joint.bound_usd if not cut_short else None
        gap = None if bound is None or not joint.cost_usd else (joint.cost_usd - bound) / joint.cost_usd
        why = "the time limit cut the search short" if cut_short else "the solver's time ran out"
        return {"status": f"cheapest found; not proven ({why})", "scope": scope, "bound": bound, "gap": gap}
    if cut_short:
        return {"status": "none found before the time limit (templates were left unsearched: a larger --time-limit may find one)",
                "scope": scope, "bound": None, "gap": None}
    return {"status": "none found", "scope": scope, "bound": None, "gap": None}


def _money(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if unit == "USD per hour" else f"{value:,.0f}"


def to_buy_text(data: dict[str, Any]) -> str:
    """The answer as a table, cheapest first, with what was assumed."""
    cost = data["cost"]
    if cost["basis"] == "tco":
        basis = (f"total cost over {cost['years']:g} years (purchase + power at {cost['usd_per_kwh']:g} USD/kWh, "
                 f"{cost['utilization']:g} of rated power, {cost['hours_per_year']:,.0f} h a year; rent for every hour)")
    else:
        basis = {"purchase": "purchase price", "hourly": "on-demand rent per hour"}[cost["basis"]]
    lines = [f"Cheapest machines for {data['model']}, {data['users']:,} user{'s' if data['users'] != 1 else ''}"
             + "".join(f", {k.replace('_', ' ')} {v:g}" for k, v in data["targets"].items() if v is not None and k != "context")
             + f"; cost: {basis} ({cost['unit']})"]
    lines += data["notes"]
    columns = ["configuration", "weights", "engine", "devices", cost["unit"], "tok/s", "tok/s/user", "TTFT s", "max users", "front",
               "verified"]
    table = [columns]
    for r in data["configurations"]:
        table.append([r["configuration"], r["weights"], r["engine"], str(r["devices"]), _money(r["cost"], cost["unit"]),
                      "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.1f}",
                      "-" if r["tokens_per_s_per_user"] is None else f"{r['tokens_per_s_per_user']:,.1f}",
                      "-" if r["time_to_first_token_s"] is None else f"{r['time_to_first_token_s']:,.2f}",
                      "-" if r["max_users"] is None else f"{r['max_users']:,}", "*" if r.get("on_front") else "",
                      "yes" if r["verified"] else "no"])
    if len(table) > 1:
        widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
        for k, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
    else:
        lines.append("No configuration of the market meets the request.")
    proof = data["proof"]
    lines.append(f"{proof['status'].capitalize()} {proof['scope']}"
                 + (f"; gap {proof['gap']:.1%}" if proof.get("gap") else "") + ". * = on the Pareto front of cost, tokens/s and "
                 "tokens/s per user.")
    described = set()
    for r in data["configurations"]:
        for t in r["templates"]:
            if t["id"] not in described:
                described.add(t["id"])
                lines.append(f"  {t['id']}: {t['name']}, {_money(t['machine_cost'], cost['unit'])} each ({'; '.join(t['cost_parts'])})")
        if not r["verified"]:
            lines.append(f"  {r['configuration']}: {r['reason']}")
    other_basis = [e for e in data["excluded"] if e["reason"] in ("rented, not bought", "not rented by the hour")]
    if other_basis:
        what = "cloud instances, rented by the hour" if cost["basis"] == "purchase" else "machines for sale, not rented"
        count = len({e["template"].split(" (")[0] for e in other_basis})
        lines.append(f"Left out: {count} {what if count != 1 else what.replace('instances', 'instance').replace('machines', 'machine')} "
                     f"(--cost tco compares buying with renting).")
    skipped = [e for e in data["excluded"] if e["reason"] and e not in other_basis]
    if skipped:
        lines.append(f"Not chosen ({len(skipped)}): " + "; ".join(f"{e['template']}: {e['reason']}" for e in skipped[:6])
                     + ("; ..." if len(skipped) > 6 else ""))
    prices = data["prices"]
    if prices["dated"]:
        lines.append(f"Prices dated {prices['dated'][0]} to {prices['dated'][-1]} (the oldest {prices['oldest_months']} months old); "
                     f"{data['market']['source']}.")
    return "\n".join(lines)

