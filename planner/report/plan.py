"""The `plan deploy` report: the plan document as a dict, and as text a person reads at a glance."""

from __future__ import annotations

from typing import Any

from planner.report.table import to_text_table
from planner.schemas.plan import ServePlan, TrainPlan
from planner.units import to_gib

BAR_WIDTH = 24
BAR_PARTS = (("weights_bytes", "W"), ("kv_cache_bytes", "K"), ("activations_bytes", "A"), ("gradients_bytes", "G"),
             ("optimizer_bytes", "S"), ("overhead_bytes", "O"))
REQUEST_LINE = ("users", "request_rate", "context", "prompt_tokens", "output_tokens", "min_tokens_per_s", "max_ttft_s", "objective", "gpu_memory_utilization",
                "global_batch_size", "micro_batch_size", "sequence_length", "optimizer", "zero_stage", "offload", "recompute")


def to_plan_dict(plan: ServePlan | TrainPlan) -> dict[str, Any]:
    """The plan as plain data (JSON/YAML)."""
    return plan.model_dump(mode="json")


def _bar(memory: dict[str, int]) -> str:
    capacity = max(memory["capacity_bytes"], 1)
    cells = ""
    for key, letter in BAR_PARTS:
        cells += letter * round(BAR_WIDTH * memory.get(key, 0) / capacity)
    cells = cells[:BAR_WIDTH]
    return "[" + cells + "." * (BAR_WIDTH - len(cells)) + "]"


def _header(data: dict[str, Any]) -> list[str]:
    request = data["request"]
    model = request["model"]
    engine = request["engine"]
    lines = [f"Plan for {model['name']} on {data['inventory']['name']} with {engine['name']} {engine['version']} "
             f"({data['mode']}): {data['solver']['status']}"]
    precision = request["precision"]
    settings = [f"weights {precision['weights']}", f"KV cache {precision['kv_cache']}"] if data["mode"] == "serve" else [
        f"weights {precision['weights']}"]
    settings += [f"{k.replace('_', ' ')} {request[k]}" for k in REQUEST_LINE if request.get(k) not in (None, "")]
    if data["mode"] == "train" and request.get("lora"):
        settings.append(f"LoRA rank {request['lora']['rank']}")
    lines.append("Request: " + ", ".join(settings))
    lines.append(f"Engine: {engine['name']} ({'--engine' if engine['chosen_by'] == 'option' else engine['reason']})")
    solver = data["solver"]
    value = "" if solver["objective"] is None else f" = {solver['objective']:,.3f} {solver['objective_unit']}"
    bound = "" if solver["bound"] is None or solver["gap"] is None else f", bound {solver['bound']:,.3f}, gap {solver['gap']:.2%}"
    lines.append(f"Solver: {solver['status']}, {solver['objective_name']}{value}{bound}; "
                 f"{solver['candidates']} layouts considered, {solver['rejected']} rejected")
    if solver.get("stopped_early"):
        lines.append("The time limit cut the search for layouts short: the plan is the best of those found (--time-limit).")
        lines += [f"  cut: {c}" for c in solver.get("cut", [])]
    return lines


def to_plan_text(data: dict[str, Any]) -> str:
    """Replicas -> stages -> devices with layer ranges, memory bars, speed and the bottleneck."""
    lines = _header(data)
    if data["mode"] == "train":
        return "\n".join(lines + _training_lines(data))
    if not data["replicas"]:
        return "\n".join(lines + ["", "No plan fits."] + data.get("explanation", []))
    perf = data["performance"]
    lines.append(f"Speed under load ({perf['prompt_tokens']:,}-token prompts, {perf['output_tokens']:,} output tokens): "
                 f"{perf['decode_tokens_per_s_per_user']:,.1f} tokens/s per user ({perf['tier']}), "
                 f"{perf['decode_tokens_per_s_total']:,.1f} tokens/s in all, {perf['requests_per_s']:,.3g} requests/s; "
                 f"time to first token {perf['time_to_first_token_s']:,.2f} s; bottleneck: {perf['bottleneck']}")
    cap = data["capacity"]
    context = data["request"]["context"]
    lines.append(f"Capacity: {cap['kv_cache_tokens']:,} KV-cache tokens per replica as the engine reports it, "
                 f"{cap['max_concurrency']:,.2f}x concurrency at {context:,} tokens per request; up to {cap['max_users']} "
                 f"users in all; the longest single request {cap['longest_sequence_tokens']:,} tokens")
    lines.append("Launch: " + _launch(data["replicas"][0]["engine"], data["request"]["engine"]["id"]))
    notes = sorted({n for r in data["replicas"] for n in r["engine"]["notes"]})
    lines += [f"Note: {n}" for n in notes]
    lines += [_host_line(r) for r in data["replicas"] if r.get("host_offload")][:6]
    lines.append("")
    rows = []
    replicas = data["replicas"]
    shown = replicas if len(replicas) <= 6 else replicas[:3] + replicas[-2:]
    for replica in shown:
        for stage in replica["stages"]:
            for n, device in enumerate(stage["devices"]):
                m = device["memory"]
                head = n == 0
                rows.append([
                    f"r{replica['index']} s{stage['index']}" if head else "",
                    replica["users"] if head and stage["index"] == 0 else "",
                    f"{stage['layers'][0]}-{stage['layers'][1] - 1}" if head else "",
                    stage["tensor_parallel_size"] if head else "", device["id"], device["type"],
                    f"{to_gib(m['total_bytes']):,.1f}/{to_gib(m['capacity_bytes']):,.1f}", _bar(m),
                    f"{replica['decode_tokens_per_s_per_user']:,.1f}" if head and stage["index"] == 0 else "",
                ])
    lines.append(to_text_table(["replica/stage", "users", "layers", "tp", "device", "type", "GiB used/cap",
                                "memory (W K A O . free)", "tok/s/user"], rows,
                               right=[False, True, False, True, False, False, True, False, True]))
    if len(replicas) > len(shown):
        lines.append(f"... {len(replicas) - len(shown)} more replicas (see --format json)")
    return "\n".join(lines + _footer(data))


LAUNCH_NAMES = {  # how each engine spells the settings a plan records
    "vllm": ("gpu_memory_utilization", "max_num_batched_tokens", "max_num_seqs", "block_size", "max_model_len"),
    "sglang": ("mem_fraction_static", "chunked_prefill_size", "max_running_requests", "page_size", "context_length"),
    "llama.cpp": (None, "ubatch", "slots", None, "ctx per slot"),
}


def _host_line(replica: dict) -> str:
    """What a replica keeps in host memory, in words."""
    h = replica["host_offload"]
    parts = []
    if h["layers"][1]:
        parts.append(f"layers 0-{h['layers'][1] - 1} and the output layer run on its CPU ({h['cpu_cores']} cores)")
    if h["expert_layers"][1] > h["layers"][1]:
        parts.append(f"the routed experts of layers {h['layers'][1]}-{h['expert_layers'][1] - 1} stay in its RAM")
    return (f"Host offload (replica {replica['index']}, {h['node']}): {' and '.join(parts)}; "
            f"{to_gib(h['total_bytes']):,.1f}/{to_gib(h['capacity_bytes']):,.1f} GiB of host memory at "
            f"{h['memory_bandwidth_gb_s']:,.1f} GB/s")


def _launch(engine: dict[str, Any], engine_id: str) -> str:
    names = LAUNCH_NAMES.get(engine_id, (None, "prefill step", "sequences", None, "context"))
    values = (engine["memory_fraction"], engine["batch_tokens"], engine["max_sequences"], engine["block_size"],
              engine["context_tokens"])
    parts = [f"{name} {value:,}" if isinstance(value, int) else f"{name} {value}"
             for name, value in zip(names, values) if name and value is not None]
    if engine_id == "vllm" and not engine["cuda_graphs"]:
        parts.append("enforce_eager")
    if engine["kv_cache_memory_bytes"]:
        parts.append(f"kv_cache_memory_bytes {engine['kv_cache_memory_bytes']:,}")
    return ", ".join(parts) + " (replica 0)"


def _training_lines(data: dict[str, Any]) -> list[str]:
    t = data["layout"]
    if t is None:
        return ["", "No training layout fits."] + data.get("explanation", [])
    perf = data["performance"]
    lines = [
        f"Layout: {t['device_type']}, tensor {t['tensor_parallel_size']} x pipeline {t['pipeline_parallel_size']} x data "
        f"{t['data_parallel_size']}, ZeRO-{t['zero_stage']}, offload {t['offload']}, recompute {t['recompute']}, micro-batch "
        f"{t['micro_batch_size']} x {t['gradient_accumulation_steps']} accumulation steps",
        f"Speed: {perf['tokens_per_s']:,.0f} tokens/s, {perf['step_time_s']:,.2f} s per step of {t['global_batch_size']} x "
        f"{t['sequence_length']:,} tokens, MFU {perf['mfu']:.0%}; bottleneck: {perf['bottleneck']}",
    ]
    offloaded = data["ranks"][0]["stages"][0]["devices"][0]["memory"]["cpu_offload_bytes"]
    if offloaded:
        lines.append(f"Host memory for offloaded states: {to_gib(offloaded):,.1f} GiB per device")
    lines.append("")
    rows = []
    for rank in data["ranks"][:2]:
        for stage in rank["stages"]:
            for n, device in enumerate(stage["devices"]):
                m = device["memory"]
                rows.append([f"rank {rank['index']} s{stage['index']}" if n == 0 else "",
                             f"{stage['layers'][0]}-{stage['layers'][1] - 1}" if n == 0 else "", device["id"], device["type"],
                             f"{to_gib(m['total_bytes']):,.1f}/{to_gib(m['capacity_bytes']):,.1f}", _bar(m)])
    lines.append(to_text_table(["rank/stage", "layers", "device", "type", "GiB used/cap", "memory (W A G S O . free)"], rows,
                               right=[False, False, False, False, True, False]))
    if len(data["ranks"]) > 2:
        lines.append(f"... {len(data['ranks']) - 2} more data-parallel ranks, laid out alike (see --format json)")
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
