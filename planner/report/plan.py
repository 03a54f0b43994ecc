"""The `plan deploy` report: the PlanOut as a dict, and as text a person reads at a glance."""

from __future__ import annotations

from typing import Any

from planner.report.table import to_text_table
from planner.schemas.plan import PlanOut

BAR_WIDTH = 24
BAR_PARTS = (("weights_bytes", "W"), ("kv_cache_bytes", "K"), ("activations_bytes", "A"), ("gradients_bytes", "G"),
             ("optimizer_bytes", "S"), ("overhead_bytes", "O"))


def to_plan_dict(plan: PlanOut) -> dict[str, Any]:
    """The plan as plain data (JSON/YAML)."""
    return plan.model_dump(mode="json")


def _bar(memory: dict[str, int]) -> str:
    capacity = max(memory["capacity_bytes"], 1)
    cells = ""
    for key, letter in BAR_PARTS:
        cells += letter * round(BAR_WIDTH * memory.get(key, 0) / capacity)
    cells = cells[:BAR_WIDTH]
    return "[" + cells + "." * (BAR_WIDTH - len(cells)) + "]"


def to_plan_text(data: dict[str, Any]) -> str:
    """Replicas -> stages -> devices with layer ranges, memory bars, speed and the bottleneck."""
    lines = [f"Plan for {data['model']} on {data['inventory']}: {data['status']}"]
    request = data["request"]
    lines.append("Request: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in request.items() if v is not None))
    solver = data["solver"]
    value = "" if solver["objective"] is None else f" = {solver['objective']:,.3f}"
    bound = "" if solver["bound"] is None else f", bound {solver['bound']:,.3f}, gap {solver['gap']:.2%}"
    lines.append(f"Solver: {solver['status']} in {solver['wall_s']:.2f} s, {solver['objective_name']}{value}{bound}; "
                 f"{solver['candidates']} layouts considered, {solver['rejected']} rejected")
    if not data["replicas"]:
        lines.append("")
        lines.append("No plan fits.")
        lines += data.get("explanation", [])
        return "\n".join(lines)
    if data.get("training"):
        return "\n".join(lines + _training_lines(data))
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
    lines += _footer(data)
    return "\n".join(lines)


def _training_lines(data: dict[str, Any]) -> list[str]:
    t = data["training"]
    lines = [
        f"Layout: {t['device_type']}, tensor {t['tensor_parallel_size']} x pipeline {t['pipeline_parallel_size']} x data "
        f"{t['data_parallel_size']}, ZeRO-{t['zero_stage']}, offload {t['offload']}, recompute {t['recompute']}, micro-batch "
        f"{t['micro_batch_size']} x {t['gradient_accumulation_steps']} accumulation steps",
        f"Speed: {t['tokens_per_s']:,.0f} tokens/s, {t['step_time_s']:,.2f} s per step of {t['global_batch_size']} x "
        f"{t['sequence_length']:,} tokens, MFU {t['mfu']:.0%}; bottleneck: {t['bottleneck']}",
    ]
    if t["cpu_offload_bytes_per_device"]:
        lines.append(f"Host memory for offloaded states: {t['cpu_offload_bytes_per_device'] / 2**30:,.1f} GiB per device")
    lines.append("")
    rows = []
    for replica in data["replicas"][:2]:
        for stage in replica["stages"]:
            for n, device in enumerate(stage["devices"]):
                m = device["memory"]
                rows.append([f"rank {replica['index']} s{stage['index']}" if n == 0 else "",
                             f"{stage['layers'][0]}-{stage['layers'][1] - 1}" if n == 0 else "", device["id"], device["type"],
                             f"{m['total_bytes'] / 2**30:,.1f}/{m['capacity_bytes'] / 2**30:,.1f}", _bar(m)])
    lines.append(to_text_table(["rank/stage", "layers", "device", "type", "GiB used/cap", "memory (W A G S O . free)"], rows,
                               right=[False, False, False, False, True, False]))
    if len(data["replicas"]) > 2:
        lines.append(f"... {len(data['replicas']) - 2} more data-parallel ranks, laid out alike (see --format json)")
    return lines + _footer(data)


def _footer(data: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if data["unused_devices"]:
        unused = data["unused_devices"]
        lines.append(f"Unused devices: {', '.join(unused[:8])}{' ...' if len(unused) > 8 else ''} ({len(unused)})")
    if data["verification"]:
        lines.append("Verifier found problems:")
        lines += [f"  - {p}" for p in data["verification"]]
    else:
        lines.append("Verified: every device fits its memory; layers, users and batches are complete.")
    return lines
