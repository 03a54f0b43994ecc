"""The `plan deploy` report: the PlanOut as a dict, and as text a person reads at a glance."""

from __future__ import annotations

from typing import Any

from planner.report.table import to_text_table
from planner.schemas.plan import PlanOut

BAR_WIDTH = 24
BAR_PARTS = (("weights_bytes", "W"), ("kv_cache_bytes", "K"), ("activations_bytes", "A"), ("overhead_bytes", "O"))


def to_plan_dict(plan: PlanOut) -> dict[str, Any]:
    """The plan as plain data (JSON/YAML)."""
    return plan.model_dump(mode="json")


def _bar(memory: dict[str, int]) -> str:
    capacity = max(memory["capacity_bytes"], 1)
    cells = ""
    for key, letter in BAR_PARTS:
        cells += letter * round(BAR_WIDTH * memory[key] / capacity)
    cells = cells[:BAR_WIDTH]
    return "[" + cells + "." * (BAR_WIDTH - len(cells)) + "]"


def to_plan_text(data: dict[str, Any]) -> str:
    """Replicas -> stages -> devices with layer ranges, memory bars, speed and the bottleneck."""
    lines = [f"Plan for {data['model']} on {data['inventory']}: {data['status']}"]
    request = data["request"]
    lines.append("Request: " + ", ".join(f"{k} {v}" for k, v in request.items()))
    solver = data["solver"]
    value = "" if solver["objective_value"] is None else f" = {solver['objective_value']:,.3f}"
    bound = "" if solver["bound"] is None else f", bound {solver['bound']:,.3f}, gap {solver['gap']:.2%}"
    lines.append(f"Solver: {solver['status']} in {solver['wall_s']:.2f} s, {solver['objective']}{value}{bound}; "
                 f"{solver['candidates']} layouts considered, {solver['rejected']} rejected")
    if not data["replicas"]:
        lines.append("")
        lines.append("No plan fits.")
        lines += data.get("explanation", [])
        return "\n".join(lines)
    perf = data["performance"]
    lines.append(f"Speed: {perf['decode_tokens_per_s_per_user']:,.1f} tokens/s per user ({perf['tier']}), "
                 f"{perf['decode_tokens_per_s_total']:,.1f} tokens/s in all; time to first token "
                 f"{perf['time_to_first_token_s']:,.2f} s; bottleneck: {perf['bottleneck']}")
    cap = data["capacity"]
    lines.append(f"Capacity: {cap['kv_cache_tokens']:,} KV-cache tokens per replica, up to {cap['max_users']} users "
                 f"at {request['context']:,} tokens")
    lines.append("")
    rows = []
    replicas = data["replicas"]
    shown = replicas if len(replicas) <= 6 else replicas[:3] + replicas[-2:]
    for replica in shown:
        for stage in replica["stages"]:
            for n, device in enumerate(stage["devices"]):
                m = device["memory"]
                label = f"r{replica['index']} s{stage['index']}" if n == 0 else ""
                layers = f"{stage['layers'][0]}-{stage['layers'][1] - 1}" if n == 0 else ""
                tp = stage["tensor_parallel_size"] if n == 0 else ""
                speed = f"{replica['decode_tokens_per_s_per_user']:,.1f}" if (n == 0 and stage["index"] == 0) else ""
                users = replica["users"] if (n == 0 and stage["index"] == 0) else ""
                rows.append([label, users, layers, tp, device["id"], device["type"],
                             f"{m['total_bytes'] / 2**30:,.1f}/{m['capacity_bytes'] / 2**30:,.1f}", _bar(m), speed])
    lines.append(to_text_table(["replica/stage", "users", "layers", "tp", "device", "type", "GiB used/cap",
                                "memory (W K A O . free)", "tok/s/user"], rows,
                               right=[False, True, False, True, False, False, True, False, True]))
    if len(replicas) > len(shown):
        lines.append(f"... {len(replicas) - len(shown)} more replicas (see --format json)")
    if data["unused_devices"]:
        unused = data["unused_devices"]
        lines.append(f"Unused devices: {', '.join(unused[:8])}{' ...' if len(unused) > 8 else ''} ({len(unused)})")
    if data["verification"]:
        lines.append("Verifier found problems:")
        lines += [f"  - {p}" for p in data["verification"]]
    else:
        lines.append("Verified: every device fits its memory, layers and users are complete.")
    return "\n".join(lines)
