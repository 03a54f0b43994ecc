"""The search of `plan whatif`'s purchase for one template at a time (planner/commands/buy.py
runs it and the joint model): each template with a weight format and an engine as an option with
its price and cost bound, the one-user speed probe, and the fewest machines of it that serve the
request, found by CP-SAT on layouts built for that many machines."""

from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import dataclass
from typing import Any

from planner.candidates.recipes import is_speed_rejection
from planner.commands.args import DeployArgs
from planner.commands.deploy import prepare_serving
from planner.errors import InputError, PlannerError, suggest_name
from planner.estimate.cost import MachineCost, estimate_machine_cost
from planner.estimate.kv_cache import estimate_kv_cache_bytes
from planner.estimate.weights import estimate_weight_bytes
from planner.loaders.engines import find_engine
from planner.loaders.links import find_link
from planner.loaders.shorthand import build_shorthand_cluster
from planner.schemas.inventory import Cluster
from planner.schemas.market import CostInputs, MachineTemplate
from planner.schemas.plan import SolveStatus
from planner.solver.market import MarketChoice, Offer, solve_market

FOUND = (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


@dataclass
class Option:
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


def engine_list(args: Any) -> list[str | None]:
    """--engine vllm,sglang: each engine named (checked), once; [None] without it (the engine rule)."""
    if not args.engine:
        return [None]
    names = list(dict.fromkeys(e.strip() for e in args.engine.split(",")))
    if any(not name for name in names):
        raise InputError(f"'{args.engine}' has an empty engine", field="--engine")
    for name in names:
        find_engine(name, kind="serve")
    return names if len(names) > 1 else [args.engine]


def users_for(args: DeployArgs) -> tuple[int, list[str]]:
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


def build_option(args: DeployArgs, template: MachineTemplate, weights: str | None, inputs: CostInputs, users: int,
            seen: dict[tuple, tuple[int, int] | str], engine: str | None = None) -> Option:
    devices = template_devices(template)
    option = Option(template, weights, estimate_machine_cost(template, devices, inputs), 1, engine=engine)
    if option.cost.usd is None:
        option.why_not = option.cost.why_not
        return option
    # Machines of the same devices and links (a server and its cloud twin) share the engine and the bound.
    key = (template.devices, template.interconnect, weights, engine)
    if key not in seen:
        try:
            setup = prepare_serving(request_for(args, option), machine_cluster(template, 1))
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


def request_for(args: DeployArgs, option: Option) -> DeployArgs:
    """The request with the option's weight format and engine."""
    update: dict[str, Any] = {"weights": option.weights}
    if option.engine is not None:
        update["engine"] = option.engine
    return args.model_copy(update=update)


def build_offer(args: DeployArgs, option: Option, machines: int, users: int, deadline: float, *,
           replicas_elsewhere: bool = True) -> Offer:
    setup = prepare_serving(request_for(args, option).model_copy(update={"users": users}), machine_cluster(option.template, machines))
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


def _too_slow_for_anyone(args: DeployArgs, option: Option, machines: int, deadline: float) -> bool:
    """A quick probe: one user alone on `machines` machines. When every layout that holds the
    model misses the speed targets even then, no count of this template can meet them (more
    users per replica are slower, and more machines only add pipeline stages)."""
    if _shards_over_machines(option.template):
        machines = max(machines, option.template.max_machines or machines)  # more machines can speed a user here
    probe = build_offer(args, option, machines, 1, deadline, replicas_elsewhere=False)
    if probe.candidates.recipes:
        return False
    rejections = probe.candidates.rejections
    if rejections and all(is_speed_rejection(r.reason) for r in rejections if r.layout.endswith(" for 1 user(s)")) and any(
            r.layout.endswith(" for 1 user(s)") for r in rejections):
        option.why_not = f"too slow even for one user: {next(r.reason for r in rejections if r.layout.endswith(' for 1 user(s)'))}"
        return True
    return False


def machines_limit(option: Option, args: Any) -> int:
    """The most machines of the option's template a purchase may take: --max-machines, or fewer
    where the template says so (a Thunderbolt mesh)."""
    return min(args.max_machines, option.template.max_machines or args.max_machines)


def search_alone(args: DeployArgs, option: Option, users: int, best: float, max_machines: int, deadline: float) -> None:
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
        offer = build_offer(args, option, machines, users, deadline)
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
