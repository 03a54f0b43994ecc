"""`plan whatif`: the same request planned on the machines as they are and as they would be after
changes (--add, --remove, --replace), and for each weight format of a list, side by side: whether
it fits, throughput, per-user speed, time to first token, capacity and what the machines cost.

Every column comes from a verified `plan deploy` of that scenario (planner/commands/deploy.py);
nothing here estimates on its own."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from planner.commands.args import DeployArgs
from planner.commands.deploy import (
    load_cluster,
    plan_reason,
    plan_speed_figures,
    run_deploy,
)
from planner.commands.formats import split_weight_list
from planner.errors import InputError, suggest_name
from planner.estimate.cost import estimate_price_age_months
from planner.loaders.links import find_link
from planner.loaders.shorthand import build_shorthand_cluster
from planner.schemas.inventory import Cluster, Node
from planner.schemas.market import CostBasis


class WhatifArgs(DeployArgs):
    """`plan whatif`: `plan deploy`'s request, plus the changes to try."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    market: str | None = Field(None, max_length=4096)
    templates: tuple[str, ...] = ()
    cost: CostBasis = "purchase"
    years: float = Field(3.0, gt=0, le=30)
    usd_per_kwh: float | None = Field(None, gt=0, le=10)
    utilization: float = Field(1.0, gt=0, le=1)
    max_machines: int = Field(16, ge=1, le=64)
    list_templates: bool = False

    @property
    def buying(self) -> bool:
        """No machines given: the question is what to buy."""
        return self.inventory is None and self.gpus is None and self.nodes is None

    @model_validator(mode="after")
    def _check_machines(self) -> WhatifArgs:
        if self.buying:
            changes = [f"--{n}" for n in ("add", "remove", "replace") if getattr(self, n)]
            if changes:
                raise ValueError(f"{', '.join(changes)} change machines you have: give them with --inventory, --gpus or --nodes")
            if self.interconnect or self.network:
                raise ValueError("--interconnect and --network describe --gpus/--nodes machines; a market template names its own")
            return self
        buy_only = [option for name, option in (("market", "--market"), ("templates", "--template"),
                                                ("usd_per_kwh", "--usd-per-kwh")) if getattr(self, name)]
        if buy_only or self.list_templates:
            raise ValueError(f"{', '.join(buy_only) or '--list-templates'} appl{'ies' if len(buy_only) < 2 else 'y'} to buying "
                             "from scratch: leave out --inventory, --gpus and --nodes")
        return DeployArgs._check_machines(self)


def _node_named(nodes: tuple[Node, ...], name: str, option: str) -> Node:
    for node in nodes:
        if node.name == name:
            return node
    names = [n.name for n in nodes]
    raise InputError(f"no machine named '{name}' (machines: {', '.join(names)})", field=option,
                     suggestion=suggest_name(name, names))


def _machine_of(items: str, option: str) -> Node:
    """One machine of the devices `items` names (--gpus syntax), with the loader's usable memory."""
    try:
        return build_shorthand_cluster(gpus=items).nodes[0]
    except InputError as err:
        raise InputError(err.detail, field=option, suggestion=err.suggestion) from None


def _swapped(cluster: Cluster, old: Node, new: Node) -> Cluster:
    return cluster.model_copy(update={"nodes": tuple(new if n.name == old.name else n for n in cluster.nodes)})


def apply_changes(cluster: Cluster, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = (),
                  replace: tuple[str, ...] = (), network: str | None = None) -> Cluster:
    """The cluster after the changes, in this order: replace, remove, add.

    --replace NODE=DEVICES  the machine's devices become DEVICES (2xrtx-4090, m3-ultra-80c-512gb)
    --remove NODE           the machine and its links go
    --add DEVICES[@NODE]    into machine NODE, or a new machine (added-1, ...) on the cluster's network
                            (`network`, when given, is the new machine's link)
    """
    for text in replace:
        name, sep, items = text.partition("=")
        if not sep or not items.strip():
            raise InputError(f"'{text}' is not NODE=DEVICES (e.g. gpu-box=2xrtx-4090)", field="--replace")
        node = _node_named(cluster.nodes, name.strip(), "--replace")
        machine = _machine_of(items, "--replace")
        interconnect = machine.interconnect if any(d.spec.unified_memory for d in machine.devices) else node.interconnect
        cluster = _swapped(cluster, node, node.model_copy(update={"interconnect": interconnect}).holding(machine.devices))
    new_machines = sum(1 for text in add if "@" not in text)
    for name in remove:
        node = _node_named(cluster.nodes, name.strip(), "--remove")
        if len(cluster.nodes) == 1 and not new_machines:
            raise InputError("no machine would be left", field="--remove")
        cluster = cluster.model_copy(update={"nodes": tuple(n for n in cluster.nodes if n.name != node.name),
                                             "links": tuple(x for x in cluster.links if node.name not in (x.a, x.b))})
    link = None
    if network is not None:
        try:
            link = find_link(network, scope="network", field="--network")
        except InputError as err:
            raise InputError(err.detail, field="--network", suggestion=err.suggestion) from None
    added = 0
    for text in add:
        items, at, where = text.partition("@")
        machine = _machine_of(items, "--add")
        if at:
            node = _node_named(cluster.nodes, where.strip(), "--add")
            grown = node.holding(node.devices + machine.devices)
            if any(d.spec.unified_memory for d in grown.devices) and len(grown.devices) > 1:
                raise InputError(f"{node.name}: a unified-memory machine (a Mac, a SoC) is one device per node", field="--add")
            cluster = _swapped(cluster, node, grown)
            continue
        added += 1
        while f"added-{added}" in {n.name for n in cluster.nodes}:
            added += 1
        # Without --network: the shared switch, or cabled to the first machine over the link the others use, or 10 GbE.
        cable = link or (cluster.links[0].link if cluster.links else find_link("ethernet-10g", scope="network"))
        cluster = cluster.joined([machine.holding(machine.devices, f"added-{added}")], cable, own_link=link is not None)
    return cluster


@dataclass(frozen=True)
class Scenario:
    name: str
    weights: str | None
    cluster: Cluster


def _cost(cluster: Cluster) -> tuple[float | None, list[str]]:
    unpriced = sorted({d.spec.id for d in cluster.devices if d.price_usd is None})
    return (None if unpriced else sum(d.price_usd or 0.0 for d in cluster.devices)), unpriced


def _price_dates(clusters: list[Cluster]) -> list[str]:
    """The catalog dates of the prices the costs used (an inventory's own price has none)."""
    dates = set()
    for cluster in clusters:
        for d in cluster.devices:
            if d.spec.price is not None and d.price_usd == d.spec.price.usd:
                dates.add(d.spec.price.date)
    return sorted(dates)


def _row(scenario: Scenario, plan: Any, code: int, base_cost: float | None) -> dict[str, Any]:
    cost, unpriced = _cost(scenario.cluster)
    fits = code == 0
    used = len(scenario.cluster.devices) - len(plan.unused_devices) if fits else 0
    return {
        "scenario": scenario.name, "weights": plan.request.precision.weights, "kv_cache": plan.request.precision.kv_cache,
        "machines": len(scenario.cluster.nodes), "devices": len(scenario.cluster.devices), "fits": fits,
        "status": plan.solver.status.value, "reason": plan_reason(plan, fits),
        "users": plan.request.users, "replicas": len(plan.replicas) if fits else 0, "devices_used": used,
        **plan_speed_figures(plan, fits),
        "cost_usd": cost, "unpriced": unpriced,
        "cost_change_usd": None if cost is None or base_cost is None else round(cost - base_cost, 2),
    }


def run_whatif(args: WhatifArgs, today: datetime.date | None = None, plans: list[dict[str, Any]] | None = None,
               progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], int]:
    """The report and its exit code (0 when at least one scenario fits, 1 when none does); each
    scenario's plan document is appended to `plans` when given."""
    today = today or datetime.date.today()
    base = load_cluster(args)
    changed = apply_changes(base, add=args.add, remove=args.remove, replace=args.replace, network=args.network) if (
        args.add or args.remove or args.replace) else None
    weights = split_weight_list(args.weights)
    if changed is None and len(weights) == 1:
        raise InputError("nothing to compare: give --add, --remove or --replace, or several --weights (q4_k_m,q8_0,bf16)",
                         field="--add")
    clusters = [("as is", base)] + ([("changed", changed)] if changed is not None else [])
    scenarios = [Scenario(name, w, c) for name, c in clusters for w in weights]
    share = args.time_limit / len(scenarios)
    base_cost = _cost(base)[0]
    rows = []
    for number, scenario in enumerate(scenarios, 1):
        run_args = args.model_copy(update={"weights": scenario.weights, "time_limit": max(share, 0.1)})
        if progress is not None:
            progress(f"scenario {number} of {len(scenarios)}: {scenario.name}" + (f", {scenario.weights}" if scenario.weights else ""))
        result = run_deploy(run_args, cluster=scenario.cluster)
        if plans is not None:
            plans.append(result.data)
        rows.append(_row(scenario, result.plan, result.exit_code, base_cost))
    dates = _price_dates([c for _, c in clusters])
    changes = ([f"--replace {t}" for t in args.replace] + [f"--remove {t}" for t in args.remove]
               + [f"--add {t}" for t in args.add])
    report = {
        "kind": "whatif", "inventory": base.name, "model": args.model, "users": args.users,
        "request_rate": args.request_rate, "changes": changes, "scenarios": rows,
        "prices": {"from_catalog_dated": dates,
                   "oldest_months": max((estimate_price_age_months(d, today) for d in dates), default=None),
                   "note": "cost is the purchase price of every device in the scenario's machines (catalog list prices "
                           "unless the inventory gives price_usd)"},
    }
    return report, 0 if any(r["fits"] for r in rows) else 1


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def to_whatif_text(data: dict[str, Any]) -> str:
    """The report as a table, one scenario per line."""
    head = f"What if: {data['model']} on {data['inventory']}"
    lines = [head + (f"; changed by {' '.join(data['changes'])}" if data["changes"] else "")]
    columns = ["scenario", "weights", "machines", "devices", "fits", "users", "tok/s", "tok/s/user", "TTFT s", "max users",
               "used", "cost USD", "change USD"]
    table = [columns]
    for r in data["scenarios"]:
        table.append([r["scenario"], r["weights"], str(r["machines"]), str(r["devices"]), "yes" if r["fits"] else "no",
                      f"{r['users']:,}", _number(r["tokens_per_s"]), _number(r["tokens_per_s_per_user"]), _number(r["time_to_first_token_s"], 2),
                      "-" if r["max_users"] is None else f"{r['max_users']:,}", str(r["devices_used"]),
                      _number(r["cost_usd"], 0) if r["cost_usd"] is not None else f"unpriced: {', '.join(r['unpriced'][:3])}",
                      _number(r["cost_change_usd"], 0)])
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for k, row in enumerate(table):
        lines.append("  ".join(cell.rjust(w) if i > 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for r in data["scenarios"]:
        if not r["fits"]:
            lines.append(f"{r['scenario']} ({r['weights']}): {r['reason']}")
    prices = data["prices"]
    if prices["from_catalog_dated"]:
        lines.append(f"Prices: catalog list prices from {prices['from_catalog_dated'][0]} to {prices['from_catalog_dated'][-1]}"
                     f" (the oldest {prices['oldest_months']} months old); {prices['note']}.")
    return "\n".join(lines)
