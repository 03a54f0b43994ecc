"""`plan whatif` without machines: the cheapest machines to buy (or rent) for a request, chosen
from a market of templates (planner/loaders/market.py), each answer a verified plan.

The search, exact within what it is offered:
1. Each template (with each weight format asked for) gets a lower bound on its cost: the fewest
   machines whose memory holds one copy of the weights and every user's KV cache, times its price.
2. Templates are taken cheapest bound first. For each, CP-SAT (planner/solver/market.py) finds the
   fewest machines of it that meet the targets, trying the bound's count, then doubling up to
   --max-machines. A template whose bound is not below the cheapest answer so far cannot win,
   alone or in a mix, and is skipped.
3. One joint CP-SAT model over every template that could still be part of a cheaper mix chooses
   how many of each to buy together with the replicas they run.
4. The winner, and the cheapest answer of each template, is re-planned by `plan deploy` on exactly
   the machines bought and checked by the verifier.
"""

from __future__ import annotations

import datetime
import fnmatch
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from planner.candidates.recipes import is_speed_rejection
from planner.commands.args import DeployArgs
from planner.commands.deploy import prepare_serving, run_deploy
from planner.commands.formats import split_weight_list
from planner.errors import InputError, PlannerError, suggest_name
from planner.estimate.cost import (
    MachineCost,
    estimate_machine_cost,
    estimate_price_age_months,
)
from planner.estimate.kv_cache import estimate_kv_cache_bytes
from planner.estimate.weights import estimate_weight_bytes
from planner.loaders.engines import find_engine
from planner.loaders.links import find_link
from planner.loaders.market import load_market_catalog, load_market_file
from planner.loaders.shorthand import build_shorthand_cluster
from planner.schemas.inventory import Cluster
from planner.schemas.market import CostInputs, MachineTemplate
from planner.schemas.plan import SolveStatus
from planner.solver.market import MarketChoice, Offer, solve_market

Progress = Callable[[str], None]
FOUND = (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
MAX_ROWS = 8  # cheapest answers shown, one per template
VERIFY_S = 10.0  # seconds for re-planning each answer on the machines bought
SEARCH_SHARE = 0.7  # of --time-limit, for the search of each template alone


@dataclass
class _Option:
    """One template with one weight format: its price, its bound, and what the search found."""

    template: MachineTemplate
    weights: str | None
    cost: MachineCost
    machines_low: int  # fewest machines memory allows for everyone
    machines_one: int = 1  # fewest machines that hold one copy of the weights (a share of the users, in a mix)
    built: Offer | None = None  # layouts on the most machines tried
    alone: MarketChoice | None = None  # its cheapest answer by itself
    why_not: str | None = None
    cut_short: bool = False  # the time limit or a layout search cut short its search

    engine: str | None = None  # an engine of --engine's list (None: the engine rule's choice)

    @property
    def key(self) -> str:
        return self.template.id + (f" ({self.weights})" if self.weights else "") + (f" [{self.engine}]" if self.engine else "")

    @property
    def bound_usd(self) -> float:
        return (self.cost.usd or 0.0) * self.machines_low


def machine_cluster(template: MachineTemplate, machines: int) -> Cluster:
    if machines == 1:
        return build_shorthand_cluster(gpus=template.devices, interconnect=template.interconnect)
    return build_shorthand_cluster(nodes=f"{machines}x({template.devices})", interconnect=template.interconnect,
                                   network=template.network)


def template_devices(template: MachineTemplate) -> list:
    return [d.spec for d in machine_cluster(template, 1).devices]


def select_templates(templates: tuple[MachineTemplate, ...], patterns: tuple[str, ...]) -> list[MachineTemplate]:
    """The templates the patterns name (ids or shell patterns; `!pattern` leaves those out, and
    alone means every other template), in market order."""
    items = [p.strip().lower() for text in patterns for p in text.split(",") if p.strip()]
    if not items:
        return list(templates)
    ids = [t.id for t in templates]
    keep = [p for p in items if not p.startswith("!")]
    drop = [p[1:] for p in items if p.startswith("!")]
    chosen: list[MachineTemplate] = [] if keep else list(templates)
    for pattern in keep + drop:
        matched = [t for t in templates if fnmatch.fnmatchcase(t.id, pattern)]
        if not matched:
            raise InputError(f"no template matches '{pattern}' (`plan whatif --list-templates` lists them)",
                             field="--template", suggestion=suggest_name(pattern, ids))
        if pattern in keep:
            chosen += [t for t in matched if t not in chosen]
    dropped = {t.id for p in drop for t in templates if fnmatch.fnmatchcase(t.id, p)}
    out = [t for t in chosen if t.id not in dropped]
    if not out:
        raise InputError(f"--template {', '.join(items)} leaves no template", field="--template")
    return out


def _engine_list(args: Any) -> list[str | None]:
    """--engine vllm,sglang: each engine named (checked), once; [None] without it (the engine rule)."""
    if not args.engine:
        return [None]
    names = list(dict.fromkeys(e.strip() for e in args.engine.split(",")))
    if any(not name for name in names):
        raise InputError(f"'{args.engine}' has an empty engine", field="--engine")
    for name in names:
        find_engine(name, kind="serve")
    return names if len(names) > 1 else [args.engine]


def _users_for(args: DeployArgs) -> tuple[int, list[str]]:
    """The users to plan for: --users, or the requests in flight a --request-rate keeps at the
    per-user speed asked for (Little's law: rate x (time to first token + output / speed))."""
    if args.request_rate is None:
        return args.users, []
    if args.min_tokens_per_s is None:
        raise InputError("buying for a --request-rate needs --min-tokens-per-s: the per-user speed sets how many "
                         "requests are in flight", field="--request-rate")
    context = args.context or 4096
    prompt = args.prompt_tokens or context // 2
    output = args.output_tokens or max(1, context - prompt)  # as a deploy splits the context
    ttft = args.max_ttft or 0.0
    users = max(1, math.ceil(args.request_rate * (ttft + output / args.min_tokens_per_s)))
    return users, [f"--request-rate {args.request_rate:g}: {users} requests in flight at {args.min_tokens_per_s:g} tokens/s "
                   f"per user and {output:,} output tokens" + (f" within a {ttft:g} s first token" if ttft else
                   " (first-token time not counted: give --max-ttft to include it)")]


def _option(args: DeployArgs, template: MachineTemplate, weights: str | None, inputs: CostInputs, users: int,
            seen: dict[tuple, tuple[int, int] | str], engine: str | None = None) -> _Option:
    devices = template_devices(template)
    option = _Option(template, weights, estimate_machine_cost(template, devices, inputs), 1, engine=engine)
    if option.cost.usd is None:
        option.why_not = option.cost.why_not
        return option
    # Machines of the same devices and links (a server and its cloud twin) share the engine and the bound.
    key = (template.devices, template.interconnect, weights, engine)
    if key not in seen:
        try:
            setup = prepare_serving(_for(args, option), machine_cluster(template, 1))
            weights = estimate_weight_bytes(setup.model, setup.mix).total_bytes
            need = weights + estimate_kv_cache_bytes(setup.model, setup.mix.kv_cache_dtype, context=setup.context, users=users)
            usable = sum(max(0, d.usable_bytes) for d in setup.cluster.devices)
            seen[key] = ((max(1, math.ceil(need / usable)), max(1, math.ceil(weights / usable))) if usable > 0
                         else (10**9, 10**9))
        except PlannerError as err:
            seen[key] = getattr(err, "detail", str(err))
    if isinstance(seen[key], str):
        option.why_not = str(seen[key])
    else:
        option.machines_low, option.machines_one = seen[key]  # type: ignore[misc]
    return option


def _for(args: DeployArgs, option: _Option) -> DeployArgs:
    """The request with the option's weight format and engine."""
    update: dict[str, Any] = {"weights": option.weights}
    if option.engine is not None:
        update["engine"] = option.engine
    return args.model_copy(update=update)


def _offer(args: DeployArgs, option: _Option, machines: int, users: int, deadline: float, *,
           replicas_elsewhere: bool = True) -> Offer:
    setup = prepare_serving(_for(args, option).model_copy(update={"users": users}), machine_cluster(option.template, machines))
    _, candidates = setup.candidates(users, deadline, replicas_elsewhere=replicas_elsewhere)
    return Offer(option.key, candidates, machines, option.cost.usd or 0.0)


def _shards_over_machines(template: MachineTemplate) -> bool:
    """Machines of this template are joined over a link fit for tensor parallelism (Thunderbolt 5
    with RDMA), so an engine that shards tensors over machines may make one user faster with more."""
    if template.network is None:
        return False
    try:
        return find_link(template.network, scope="network").tensor_parallel_ok
    except PlannerError:
        return False


def _too_slow_for_anyone(args: DeployArgs, option: _Option, machines: int, deadline: float) -> bool:
    """A quick probe: one user alone on `machines` machines. When every layout that holds the
    model misses the speed targets even then, no count of this template can meet them (more
    users per replica are slower, and more machines only add pipeline stages)."""
    if _shards_over_machines(option.template):
        machines = max(machines, option.template.max_machines or machines)  # more machines can speed a user here
    probe = _offer(args, option, machines, 1, deadline, replicas_elsewhere=False)
    if probe.candidates.recipes:
        return False
    rejections = probe.candidates.rejections
    if rejections and all(is_speed_rejection(r.reason) for r in rejections if r.layout.endswith(" for 1 user(s)")) and any(
            r.layout.endswith(" for 1 user(s)") for r in rejections):
        option.why_not = f"too slow even for one user: {next(r.reason for r in rejections if r.layout.endswith(' for 1 user(s)'))}"
        return True
    return False


def _limit(option: _Option, args: Any) -> int:
    """The most machines of the option's template a purchase may take: --max-machines, or fewer
    where the template says so (a Thunderbolt mesh)."""
    return min(args.max_machines, option.template.max_machines or args.max_machines)


def _search_alone(args: DeployArgs, option: _Option, users: int, best: float, max_machines: int, deadline: float) -> None:
    """The fewest machines of this template alone that serve the request, if fewer than cost `best`."""
    machines = option.machines_low
    if machines > max_machines:
        option.why_not = f"its memory needs at least {machines} machines, more than --max-machines {max_machines}"
        return
    if _too_slow_for_anyone(args, option, max_machines if _shards_over_machines(option.template) else machines, deadline):
        return
    price = option.cost.usd or 0.0
    while machines <= max_machines:
        if time.perf_counter() >= deadline:
            option.cut_short = True
            return
        if price * machines >= best:
            option.why_not = (f"{option.why_not}; " if option.why_not else "") + (
                f"{machines} machines would cost {price * machines:,.0f}, not less than {best:,.0f}")
            return
        offer = _offer(args, option, machines, users, deadline)
        option.built = offer
        option.cut_short = option.cut_short or offer.candidates.stopped_early
        choice = solve_market([offer], users, time_limit_s=max(0.1, deadline - time.perf_counter()))
        if choice.status in FOUND:
            option.alone = choice
            option.why_not = None
            return
        rejections = offer.candidates.rejections
        option.why_not = (rejections[0].reason if rejections and not offer.candidates.recipes else
                          f"{machines} machine(s) serve fewer than {users:,} users at the targets")
        one_user = [r for r in rejections if r.layout.endswith(" for 1 user(s)")]
        if (not offer.candidates.recipes and one_user and all(is_speed_rejection(r.reason) for r in one_user)
                and not _shards_over_machines(option.template)):
            # Even one user is too slow on every layout that fits: more machines only add pipeline
            # stages, which make no user faster.
            option.why_not = f"too slow: {one_user[0].reason}"
            return
        if machines == max_machines:
            return
        # Double, but never past the largest count still cheaper than the best answer so far.
        cheaper = math.ceil(best / price) - 1 if price > 0 and math.isfinite(best) else max_machines
        step = min(max_machines, machines * 2, max(cheaper, machines + 1))
        machines = step


def _fewest_for_rate(args: DeployArgs, rate: float, parts: list[tuple[_Option, int]], time_limit: float) -> list[tuple[_Option, int]]:
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


def _deploy(args: DeployArgs, parts: list[tuple[_Option, int]], time_limit: float) -> Any:
    cluster = build_answer_cluster({"templates": [{"machines": n, "devices": o.template.devices, "interconnect": o.template.interconnect,
                                                   "network": o.template.network} for o, n in parts]})
    return run_deploy(_for(args, parts[0][0]).model_copy(update={"time_limit": max(time_limit, 0.5), "objective": "throughput"}),
                      cluster=cluster, replicas_elsewhere=len(parts) > 1)


def _verify(args: DeployArgs, parts: list[tuple[_Option, int]], time_limit: float) -> dict[str, Any]:
    """`plan deploy` on exactly the machines bought (one template, or a mix), verified."""
    result = _deploy(args, parts, time_limit)
    plan = result.plan
    fits = result.exit_code == 0
    performance, capacity = plan.performance, plan.capacity
    return {
        "verified": fits and not plan.verification, "status": plan.solver.status.value,
        "reason": None if fits else next((line for line in plan.explanation if line.strip()), "no plan"),
        "weights": plan.request.precision.weights, "engine": plan.request.engine.id,
        "replicas": len(plan.replicas) if fits else 0,
        "tokens_per_s": performance.decode_tokens_per_s_total if fits else None,
        "tokens_per_s_per_user": performance.decode_tokens_per_s_per_user if fits else None,
        "time_to_first_token_s": performance.time_to_first_token_s if fits else None,
        "max_users": capacity.max_users if fits else None,
        "plan": result.data,
    }


def _row(parts: list[tuple[_Option, int]], choice: MarketChoice, checked: dict[str, Any]) -> dict[str, Any]:
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
    users, notes = _users_for(args)
    plan_args = args.model_copy(update={"request_rate": None, "users": users, "explicit": args.explicit - {"request_rate"}})
    seen: dict[tuple, tuple[int, int] | str] = {}
    engines = _engine_list(args)
    options = [_option(plan_args, t, w, inputs, users, seen, e) for e in engines for w in weights_list for t in templates]
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
        _search_alone(plan_args, option, users, best if prune else math.inf, _limit(option, args), search_deadline)
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
                _search_alone(plan_args, option, users, kind_best, _limit(option, args), search_deadline)
                if option.alone is not None and option.alone.cost_usd is not None:
                    kind_best = option.alone.cost_usd
                    say(f"cheapest {kind}: {option.key}, {option.alone.cost_usd:,.2f}")
    cut_short = any(o.why_not == "not searched: the time limit came first" or o.cut_short for o in priced)
    # A template not searched alone (its bound for everyone was too high) may still serve a share
    # of the users in a mix: build it at the most machines that could still be cheaper than the best.
    for option in priced:
        limit = _limit(option, args)
        price = option.cost.usd or 0.0
        if option.built is not None or option.alone is not None or (option.why_not or "").startswith("too slow"):
            continue
        count = limit if not math.isfinite(best) else min(limit, math.ceil(best / price) - 1 if price > 0 else limit)
        if count < option.machines_one or price * option.machines_one >= best:
            continue
        if time.perf_counter() > search_deadline:
            option.cut_short = True
            continue
        option.built = _offer(plan_args, option, count, users, search_deadline)
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

    def checked(parts: list[tuple[_Option, int]]) -> tuple[list[tuple[_Option, int]], dict[str, Any]]:
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

