"""`plan diff A B`: what changed between two plans, in words: the request, the inventory, each
replica's (or training rank's) devices, layers and sizes, and the predicted speed and capacity."""

from __future__ import annotations

from typing import Any

from planner.schemas.plan import ServePlan, TrainPlan

_SKIP_REQUEST = {"time_limit_s"}


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def _number(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and a:
        shown = (f"{a:,} -> {b:,}" if isinstance(a, int) and isinstance(b, int) else f"{a:,.4g} -> {b:,.4g}")
        return f"{shown} ({(b - a) / abs(a):+.1%})"
    return f"{a!r} -> {b!r}"


def _compare(label: str, a: dict[str, Any], b: dict[str, Any], skip: set[str] = frozenset()) -> list[str]:
    fa, fb = _flat(a), _flat(b)
    return [f"{label}{k}: {_number(fa.get(k), fb.get(k))}" for k in sorted(set(fa) | set(fb))
            if k.split(".")[0] not in skip and fa.get(k) != fb.get(k)]


def _serve_units(plan: ServePlan) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in plan.replicas:
        out[f"replica {r.index}"] = {
            "users": r.users, "kv_cache_tokens": r.kv_cache_tokens, "max_concurrency": r.max_concurrency,
            "decode_tokens_per_s_per_user": r.decode_tokens_per_s_per_user, "time_to_first_token_s": r.time_to_first_token_s,
            "engine": r.engine.model_dump(mode="json", exclude={"notes"}),
            "stages": {str(s.index): {"layers": f"{s.layers[0]}-{s.layers[1] - 1}", "tensor_parallel_size": s.tensor_parallel_size,
                                      "devices": ",".join(d.id for d in s.devices),
                                      "largest_device_bytes": max(d.memory.total_bytes for d in s.devices)}
                       for s in r.stages}}
    return out


def _train_units(plan: TrainPlan) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"layout": plan.layout.model_dump(mode="json") if plan.layout else {}}
    for r in plan.ranks:
        out[f"rank {r.index}"] = {"stages": {str(s.index): {"layers": f"{s.layers[0]}-{s.layers[1] - 1}",
                                                            "devices": ",".join(d.id for d in s.devices),
                                                            "largest_device_bytes": max(d.memory.total_bytes for d in s.devices)}
                                             for s in r.stages}}
    return out


def build_plan_diff(a: ServePlan | TrainPlan, b: ServePlan | TrainPlan) -> list[str]:
    """Every difference, one line each (empty when the plans agree on everything but timing)."""
    if a.mode != b.mode:
        return [f"mode: {a.mode} -> {b.mode} (a serving and a training plan share nothing else to compare)"]
    lines = _compare("request.", a.request.model_dump(mode="json"), b.request.model_dump(mode="json"), _SKIP_REQUEST)
    if a.inventory.digest != b.inventory.digest:
        lines.append(f"inventory: {a.inventory.name} ({a.inventory.devices} devices) -> {b.inventory.name} "
                     f"({b.inventory.devices} devices), figures or links differ")
    ua = _serve_units(a) if isinstance(a, ServePlan) else _train_units(a)  # type: ignore[arg-type]
    ub = _serve_units(b) if isinstance(b, ServePlan) else _train_units(b)  # type: ignore[arg-type]
    for unit in sorted(set(ua) | set(ub), key=lambda u: (u.split()[0], int(u.split()[-1]) if u.split()[-1].isdigit() else -1)):
        if unit not in ua:
            lines.append(f"{unit}: added")
        elif unit not in ub:
            lines.append(f"{unit}: removed")
        else:
            lines += _compare(f"{unit}: ", ua[unit], ub[unit])
    for part in ("performance", "capacity"):
        pa, pb = getattr(a, part, None), getattr(b, part, None)
        lines += _compare(f"{part}.", pa.model_dump(mode="json") if pa else {}, pb.model_dump(mode="json") if pb else {})
    if sorted(a.unused_devices) != sorted(b.unused_devices):
        lines.append(f"unused devices: {len(a.unused_devices)} -> {len(b.unused_devices)}")
    if a.solver.status != b.solver.status:
        lines.append(f"solver.status: {a.solver.status.value} -> {b.solver.status.value}")
    return lines
