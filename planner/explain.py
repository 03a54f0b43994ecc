"""Why a request cannot be planned, in the user's terms, and the smallest changes that would fit.

Each suggested change is computed: the request is re-planned with the change and kept only when
a plan then exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from planner.candidates.recipes import CandidateSet, build_candidates
from planner.estimate.kv_cache import estimate_kv_cache_bytes
from planner.estimate.weights import estimate_weight_bytes
from planner.schemas.engine import EngineProfile
from planner.schemas.inventory import Cluster, Node
from planner.schemas.link import LinkSpec
from planner.schemas.market import MarketMachine
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionFormat, PrecisionMix
from planner.schemas.serving import ServeRequest
from planner.schemas.speed import SpeedCalibration
from planner.solver.solve import (
    SolveStatus,
    heuristic_copies,
    solve_candidates,
    users_upper_bound,
)
from planner.units import to_gb

WEIGHT_LADDER = ("fp8", "int8", "q8_0", "q6_k", "q5_k_m", "int4", "q4_k_m", "q3_k_m", "q2_k")
KV_LADDER = ("fp8", "q8_0", "int8", "int4", "q4_0")
MAX_MACHINES_TO_ADD = 4
MARKET_OFFERS_TRIED = 8  # cheapest machines of the market tried as additions
EXPLAIN_BUDGET_S = 20.0  # the search for smallest changes stops here and says so
CHECK_TIME_LIMIT_S = 2.0


class _OutOfTime(Exception):
    """The explanation budget ran out."""


def is_feasible(model: ModelSpec, mix: PrecisionMix, request: ServeRequest, cluster: Cluster,
                calibrations: dict[str, SpeedCalibration], engine: EngineProfile, time_limit_s: float = CHECK_TIME_LIMIT_S,
                deadline: float | None = None) -> bool:
    """True when some plan serves every user (a quick heuristic first, then a short solve; a
    check that runs out of time counts as not feasible)."""
    if deadline is not None:
        time_limit_s = min(time_limit_s, deadline - time.perf_counter())
        if time_limit_s <= 0:
            raise _OutOfTime
    candidates = build_candidates(model, mix, request, cluster, calibrations, engine, coarse=True, deadline=deadline)
    if candidates.stopped_early:
        raise _OutOfTime
    if not candidates.recipes:
        return False
    if heuristic_copies(candidates):
        return True
    if users_upper_bound(candidates, time_limit_s=time_limit_s / 2) < request.users:
        return False
    return solve_candidates(candidates, time_limit_s=time_limit_s).status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


def explain_binding(candidates: CandidateSet) -> list[str]:
    """The binding constraint: total memory, a single device, or the speed floor."""
    model, mix, request, cluster = candidates.model, candidates.mix, candidates.request, candidates.cluster
    weights = estimate_weight_bytes(model, mix).total_bytes
    kv = estimate_kv_cache_bytes(model, mix.kv_cache_dtype, context=request.context, users=request.users)
    budget = sum(max(0.0, c.capacity_bytes) * c.devices for c in candidates.classes)
    lines = [
        f"{model.name} in {mix.weights.id} needs {to_gb(weights):,.1f} GB of weights plus {to_gb(kv):,.1f} GB of "
        f"{mix.kv_cache_dtype.id} KV cache for {request.users} user(s) at {request.context:,} tokens; the inventory's "
        f"engines may use {to_gb(budget):,.1f} GB in all ({len(cluster.devices)} devices)."
    ]
    reasons: list[str] = []
    for rejection in candidates.rejections:
        if rejection.reason not in reasons:
            reasons.append(rejection.reason)
    for reason in reasons[:3]:
        lines.append(f"  - {reason}")
    if candidates.recipes:
        lines.append("  - layouts exist for fewer users per replica, but not enough devices to serve every user with them")
    return lines


def _first_fitting(options: list, build: Callable[[object], bool]) -> object | None:
    for option in options:
        if build(option):
            return option
    return None


def _largest(low: int, high: int, fits: Callable[[int], bool]) -> int | None:
    """The largest value in [low, high] that fits, assuming fitting is monotone; None if low fails."""
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _with_machines(cluster: Cluster, like: Node, count: int, link: LinkSpec) -> Cluster:
    """`count` more machines made like `like`."""
    return cluster.joined([like.holding(like.devices, f"added-{k + 1}").model_copy(update={"address": None})
                           for k in range(count)], link)


def _make_up(node: Node) -> str:
    counts: dict[str, int] = {}
    for d in node.devices:
        counts[d.spec.id] = counts.get(d.spec.id, 0) + 1
    return " + ".join(f"{n}x {t}" for t, n in counts.items())


def explain_changes(
    model: ModelSpec, mix: PrecisionMix, request: ServeRequest, cluster: Cluster, calibrations: dict[str, SpeedCalibration],
    engine: EngineProfile, *, weight_formats: dict[str, PrecisionFormat], kv_formats: dict[str, PrecisionFormat], market: list[MarketMachine],
    links: dict[str, LinkSpec], deadline: float | None = None,
) -> list[str]:
    """Smallest changes that would fit, each verified by re-planning, within EXPLAIN_BUDGET_S and
    before `deadline` (a time.perf_counter() value). The checks use replica sizes of U / 2^k
    users, so a change they find always fits; on large clusters a slightly larger change may fit too."""
    out: list[str] = []
    start = time.perf_counter()
    stop = start + EXPLAIN_BUDGET_S if deadline is None else min(deadline, start + EXPLAIN_BUDGET_S)

    def feasible(new_mix: PrecisionMix = mix, new_request: ServeRequest = request, new_cluster: Cluster = cluster) -> bool:
        if time.perf_counter() > stop:
            raise _OutOfTime
        return is_feasible(model, new_mix, new_request, new_cluster, calibrations, engine, deadline=stop)

    try:
        _search_changes(out, feasible, model, mix, request, cluster, weight_formats, kv_formats, market, links)
    except _OutOfTime:
        out.append(f"(stopped looking for more changes after {time.perf_counter() - start:,.1f} s, at the time limit)")
    return out


def _search_changes(out, feasible, model, mix, request, cluster, weight_formats, kv_formats, market, links) -> None:
    """The searches behind explain_changes, in order of how little each change asks."""

    context = _largest(1, request.context - 1, lambda c: feasible(new_request=request.model_copy(update={"context": c})))
    if context:
        out.append(f"context up to {context:,} tokens for {request.users} user(s) (--context {context})")
    users = _largest(1, request.users - 1, lambda u: feasible(new_request=request.model_copy(update={"users": u})))
    if users:
        out.append(f"up to {users} user(s) at {request.context:,} tokens (--users {users})")
    current_bits = estimate_weight_bytes(model, mix).bits_per_weight(max(1, sum(t.tensor.params for t in estimate_weight_bytes(model, mix).tensors)))
    lower = []
    for name in WEIGHT_LADDER:
        fmt = weight_formats[name]
        candidate = mix.model_copy(update={"weights": fmt})
        bits = estimate_weight_bytes(model, candidate).bits_per_weight(sum(t.tensor.params for t in estimate_weight_bytes(model, candidate).tensors))
        if bits < current_bits - 0.01:
            lower.append((name, candidate))
    found = _first_fitting(lower, lambda item: feasible(new_mix=item[1]))
    if found:
        out.append(f"weights in {found[0]} (--weights {found[0]})")
    kv_lower = [(n, mix.model_copy(update={"kv_cache_dtype": kv_formats[n]})) for n in KV_LADDER
                if kv_formats[n].bits_per_weight(model.head_dim) < mix.kv_cache_dtype.bits_per_weight(model.head_dim) - 0.01]
    found = _first_fitting(kv_lower, lambda item: feasible(new_mix=item[1]))
    if found:
        out.append(f"KV cache in {found[0]} (--kv-cache {found[0]})")
    network = cluster.links[0].link if cluster.links else links["ethernet-10g"]
    # More of what the cluster is made of: whole machines like its own, fewest first.
    seen: set[tuple] = set()
    for node in cluster.nodes:
        key = (_make_up(node), node.interconnect.id)
        if key in seen:
            continue
        seen.add(key)
        more = next((k for k in range(1, MAX_MACHINES_TO_ADD + 1) if feasible(new_cluster=_with_machines(cluster, node, k, network))),
                    None)
        if more:
            prices = [d.price_usd for d in node.devices]
            cost = "" if any(p is None for p in prices) else f", {more * sum(prices):,.0f} USD for its devices"
            out.append(f"add {more} machine{'s' if more > 1 else ''} like {node.name} ({key[0]}{cost})")
            break
    # Then machines one can buy (the purchase market of plan whatif) made of the kinds of device the
    # cluster runs on (data-centre HBM parts beside HBM parts, GDDR cards beside GDDR cards, Macs
    # beside Macs), cheapest first.
    kinds = {d.spec.calibration_class for d in cluster.devices}
    offers = sorted((m for m in market if {d.spec.calibration_class for d in m.node.devices} <= kinds),
                    key=lambda m: (m.price_usd, m.template_id))[:MARKET_OFFERS_TRIED]
    added = 0
    for offer in offers:
        more = next((k for k in range(1, MAX_MACHINES_TO_ADD + 1)
                     if feasible(new_cluster=_with_machines(cluster, offer.node, k, network))), None)
        if more:
            out.append(f"add {more} machine{'s' if more > 1 else ''} {offer.template_id} ({_make_up(offer.node)}; "
                       f"{more * offer.price_usd:,.0f} USD at {offer.date} prices)")
            added += 1
            if added == 3:
                break
    if request.min_tokens_per_s and len(cluster.nodes) > 1:
        for node in cluster.nodes:
            rest = Cluster(name=cluster.name, nodes=tuple(n for n in cluster.nodes if n.name != node.name),
                           links=tuple(link for link in cluster.links if node.name not in (link.a, link.b)), source=cluster.source)
            try:
                ok = feasible(new_cluster=rest)
            except _OutOfTime:
                raise
            except Exception:  # noqa: BLE001 - the remaining nodes may have no link between them
                ok = False
            if ok:
                out.append(f"drop node {node.name} (its devices slow the pipeline below {request.min_tokens_per_s:g} tokens/s)")
