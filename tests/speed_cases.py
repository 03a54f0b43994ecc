"""The measured speeds of tests/data/speed_measurements.yaml, each re-planned the way a user would
check it: `plan deploy` with the measured engine, devices, layout (-tp, -pp, one replica),
concurrency and prompt/output lengths pinned; the plan's own figures are compared with the
measurement. Shared by tests/test_speed.py and the benchmarks."""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parent / "data" / "speed_measurements.yaml"
ROWS: list[dict] = yaml.safe_load(DATA.read_text())["rows"]
# TensorRT-LLM has no profile: its rows are planned as vLLM, the same engine class (docs/speed.md).
ENGINE_OF = {"vllm": "vllm", "sglang": "sglang", "trtllm": "vllm", "llama.cpp": "llama.cpp", "mlx-lm": "mlx-lm", "exo": "exo"}
SWITCHED = ("h100-sxm", "h200", "b200", "gb200", "a100-sxm-80gb", "a100-sxm-40gb", "v100-sxm2-32gb", "mi300x", "mi325x", "mi250x")


@dataclass(frozen=True)
class Comparison:
    """One measured figure of a row against the plan's."""

    row: dict
    metric: str  # decode_tokens_per_s_per_user | output_tokens_per_s | ttft_s | prefill_tokens_per_s
    measured: float
    predicted: float

    @property
    def error(self) -> float:
        """Relative error of the prediction, signed."""
        return (self.predicted - self.measured) / self.measured


def inventory_text(row: dict) -> str:
    """An inventory of the measured machine(s)."""
    from planner.loaders.hardware import find_hardware

    spec = find_hardware(row["device"])
    if spec.kind == "apple-silicon":
        interconnect = "unified"
    elif row["device"] in SWITCHED:
        interconnect = "infinity-fabric" if spec.vendor == "amd" else "nvswitch"
    else:
        interconnect = f"pcie-{spec.pcie_generation or 4}"
    machines = row.get("machines", 1)
    per_machine = row["count"] // machines
    lines = ["name: measured", "nodes:", "  - name: m", f"    count: {machines}", f"    interconnect: {interconnect}",
             "    host_memory_gb: 1024", "    devices:", f"      - type: {row['device']}", f"        count: {per_machine}"]
    if machines == 2:
        lines += ["network:", "  links:", "    - between: [m-1, m-2]", f"      type: {row.get('network', 'ethernet-10g')}"]
    elif machines > 2:  # every pair cabled (a Thunderbolt mesh), or one switch for everything else
        network = row.get("network", "ethernet-10g")
        if network.startswith("thunderbolt"):
            pairs = [(a, b) for a in range(1, machines + 1) for b in range(a + 1, machines + 1)]
            lines += ["network:", "  links:"] + [f"    - {{between: [m-{a}, m-{b}], type: {network}}}" for a, b in pairs]
        else:
            lines += [f"network: {network}"]
    return "\n".join(lines) + "\n"


def deploy_args(row: dict, inventory: Path) -> dict:
    """The `plan deploy` options that pin the measured setup."""
    args = {"inventory": str(inventory), "model": row["model"], "engine": ENGINE_OF[row["engine"]],
            "users": row["concurrency"], "prompt_tokens": row["prompt_tokens"], "output_tokens": row["output_tokens"],
            "context": row["prompt_tokens"] + row["output_tokens"], "tensor_parallel_size": row["tp"],
            "pipeline_parallel_size": row["pp"], "data_parallel_size": 1, "time_limit": 20.0, "fmt": "json"}
    if row["weights"] != "checkpoint":
        args["weights"] = row["weights"]
    args["kv_cache"] = row.get("kv_cache", "fp16")
    return args


def deploy_on(inventory: str, args: dict) -> dict | str:
    """`plan deploy` with `args` on an inventory given as text: the plan (JSON data), or why there is none."""
    from planner.commands.args import DeployArgs
    from planner.commands.deploy import run_deploy
    from planner.errors import PlannerError

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "measured.yaml"
        path.write_text(inventory)
        args = {**args, "inventory": str(path)}
        try:
            result = run_deploy(DeployArgs(explicit=frozenset(args), **args))
        except PlannerError as exc:
            return str(exc)
    data = json.loads(json.dumps(result.data))
    if not data.get("replicas"):
        return "; ".join(data.get("explanation", [])[:2]) or "no plan"
    return data


def plan_row(row: dict) -> dict | str:
    """The plan for a row (as plan JSON data), or why there is none."""
    return deploy_on(inventory_text(row), deploy_args(row, Path("measured.yaml")))


def compare_row(row: dict) -> list[Comparison] | str:
    """Every measured figure of a row against the plan's own, or why the row has no plan."""
    plan = plan_row(row)
    if isinstance(plan, str):
        return plan
    replica = plan["replicas"][0]
    measured = row["measured"]
    decode_only = row.get("decode_only", False)
    out = []
    per_user = replica["decode_only_tokens_per_s_per_user"] if decode_only else replica["decode_tokens_per_s_per_user"]
    if "tpot_ms" in measured:
        out.append(Comparison(row, "decode_tokens_per_s_per_user", 1000.0 / measured["tpot_ms"], per_user))
    elif "decode_tokens_per_s_per_user" in measured:
        out.append(Comparison(row, "decode_tokens_per_s_per_user", measured["decode_tokens_per_s_per_user"], per_user))
    if "output_tokens_per_s" in measured:
        total = per_user * row["concurrency"] if decode_only else replica["decode_tokens_per_s"]
        out.append(Comparison(row, "output_tokens_per_s", measured["output_tokens_per_s"], total))
    if "ttft_ms" in measured:
        out.append(Comparison(row, "ttft_s", measured["ttft_ms"] / 1000.0, replica["time_to_first_token_s"]))
    if "prefill_tokens_per_s" in measured:
        out.append(Comparison(row, "prefill_tokens_per_s", measured["prefill_tokens_per_s"],
                              replica["prefill_tokens_per_s"]))
    return out


def summarise(comparisons: list[Comparison]) -> tuple[float, float, int]:
    """(median |error|, share within 35%, count)."""
    errors = [abs(c.error) for c in comparisons]
    if not errors:
        return math.nan, math.nan, 0
    return statistics.median(errors), sum(e <= 0.35 for e in errors) / len(errors), len(errors)


def engine_class(row: dict) -> str:
    """The speed class of the engine the row is planned with."""
    from planner.loaders.engines import load_engine_catalog

    return load_engine_catalog()[ENGINE_OF[row["engine"]]].speed.speed_class
