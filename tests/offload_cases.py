"""The measured llama.cpp host-offload speeds of tests/data/offload_measurements.yaml, each
re-planned as a user would check it: `plan deploy --engine llama.cpp` on the measured machine
(its GPUs, RAM, memory channels and speed, cores) with the measured offload pinned
(--n-cpu-moe, --cpu-layers), one user, llama-bench's prompt; the plan's decode-only speed and
prompt speed are compared with the measurement. Shared by tests/test_offload_speed.py and
tests/benchmarks/calibrate_offload.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.speed_cases import deploy_on

DATA = Path(__file__).resolve().parent / "data" / "offload_measurements.yaml"
ROWS: list[dict] = yaml.safe_load(DATA.read_text())["rows"]


@dataclass(frozen=True)
class OffloadComparison:
    """One measured figure of a row against the plan's."""

    row: dict
    metric: str  # decode_tokens_per_s | prefill_tokens_per_s
    measured: float
    predicted: float

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured


def inventory_text(row: dict) -> str:
    """The measured machine: its GPUs and its host."""
    host = row["host"]
    lines = ["name: measured", "nodes:", "  - name: m", f"    host_memory_gb: {host['memory_gb']}",
             f"    host_cpu_cores: {host['cores']}"]
    if "bandwidth_gb_s" in host:
        lines.append(f"    host_memory_bandwidth_gb_s: {host['bandwidth_gb_s']}")
    else:
        lines += [f"    host_memory_channels: {host['channels']}", f"    host_memory_mt_s: {host['mt_s']}"]
    gpu = row["gpu"]
    lines += ["    devices:", "      - type: custom", f"        count: {row.get('count', 1)}"]
    lines += [f"        {key}: {str(value).lower() if isinstance(value, bool) else value}" for key, value in gpu.items()]
    return "\n".join(lines) + "\n"


def plan_row(row: dict) -> dict | str:
    """The plan for a row (plan JSON data), or why there is none."""
    prompt = row["measured"].get("prompt_tokens", 512)
    args = {"model": row["model"], "weights": row["weights"], "engine": "llama.cpp", "users": 1,
            "prompt_tokens": prompt, "output_tokens": 128, "context": prompt + 128, "kv_cache": row.get("kv_cache", "fp16"),
            "fmt": "json", "time_limit": 20.0}
    offload = row["offload"]
    if "n_cpu_moe" in offload:
        args["n_cpu_moe"] = offload["n_cpu_moe"]
    if "cpu_layers" in offload:
        args["cpu_layers"] = offload["cpu_layers"]
    return deploy_on(inventory_text(row), args)


def compare_row(row: dict) -> list[OffloadComparison] | str:
    """The row's measured decode and prompt speeds against the plan's."""
    plan = plan_row(row)
    if isinstance(plan, str):
        return plan
    replica = plan["replicas"][0]
    measured = row["measured"]
    out = []
    if "decode_tokens_per_s" in measured:
        out.append(OffloadComparison(row, "decode_tokens_per_s", measured["decode_tokens_per_s"],
                                     replica["decode_only_tokens_per_s_per_user"]))
    if "prefill_tokens_per_s" in measured:
        out.append(OffloadComparison(row, "prefill_tokens_per_s", measured["prefill_tokens_per_s"],
                                     replica["prefill_tokens_per_s"]))
    return out
