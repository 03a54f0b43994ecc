"""Replay real vLLM start-ups through `plan deploy --engine vllm`.

Each case of tests/data/vllm_startup_cases.yaml names the log it replays
(tests/data/vllm_startup_logs.yaml), the catalog model and formats, and the GPU. The replay
writes the model's config.json and a one-machine inventory, pins the log's tensor- and
pipeline-parallel sizes and passes the flags the log shows (version, gpu_memory_utilization,
max_model_len, max_num_seqs, max_num_batched_tokens, block size, --enforce-eager), as a user
holding the planner to a measurement would. Shared by tests/test_vllm_memory.py and
tests/benchmarks/vllm_kv_accuracy.py.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from planner.commands.args import DeployArgs
from planner.commands.deploy import run_deploy
from planner.loaders.catalog import load_model_catalog

DATA = Path(__file__).resolve().parent / "data"
GiB = 2**30


def load_logs() -> list[dict[str, Any]]:
    return yaml.safe_load((DATA / "vllm_startup_logs.yaml").read_text())["logs"]


def load_cases() -> list[dict[str, Any]]:
    return yaml.safe_load((DATA / "vllm_startup_cases.yaml").read_text())["cases"]


@dataclass(frozen=True)
class Replay:
    """What the planner predicts for one start-up, beside what vLLM printed."""

    log: int
    model: str
    gpu: str
    tp: int
    pp: int
    version: str
    logged_tokens: int | None
    predicted_tokens: int
    logged_concurrency: float | None
    predicted_concurrency: float
    logged_available_gib: float | None
    predicted_available_gib: float  # the first stage's free memory for the cache (vLLM logs rank 0's)
    logged_weights_gib: float | None
    predicted_weights_gib: float
    predicted_activations_gib: float
    predicted_overhead_gib: float
    scored: bool

    @property
    def token_error(self) -> float | None:
        """Relative error of the cache size in tokens."""
        if not self.logged_tokens:
            return None
        return (self.predicted_tokens - self.logged_tokens) / self.logged_tokens

    @property
    def available_error(self) -> float | None:
        if not self.logged_available_gib:
            return None
        return (self.predicted_available_gib - self.logged_available_gib) / self.logged_available_gib


def _version(case: dict[str, Any], log: dict[str, Any]) -> str:
    text = str(case.get("version") or log["vllm_version"])
    return text.split()[0]


def replay(case: dict[str, Any], log: dict[str, Any], workdir: Path) -> Replay:
    """Plan the case's start-up and read the plan's capacity."""
    entry, _ = load_model_catalog()[case["model"]]
    config = {**entry.config, **(case.get("config") or {})}
    config = {k: v for k, v in config.items() if v is not None}
    folder = workdir / f"log{case['log']}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    gpus = log["tensor_parallel_size"] * log["pipeline_parallel_size"]
    inventory = folder / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"name": f"log{case['log']}", "nodes": [
        {"name": "node", "interconnect": case["interconnect"], "devices": [{"type": case["device"], "count": gpus}]}]}))
    kv = log.get("kv_cache_dtype") or "auto"
    args = DeployArgs(
        inventory=str(inventory), model=str(folder / "config.json"), engine="vllm", engine_version=_version(case, log),
        users=1, context=log.get("max_model_len"), weights=case.get("weights"),
        kv_cache=case.get("kv_cache") or (None if kv == "auto" else kv),
        tensor_parallel_size=log["tensor_parallel_size"], pipeline_parallel_size=log["pipeline_parallel_size"],
        data_parallel_size=1, gpu_memory_utilization=log.get("gpu_memory_utilization"),
        prefill_chunk=log.get("max_num_batched_tokens"), max_sequences=log.get("max_num_seqs"),
        block_size=log.get("block_size") if log.get("block_size") not in (None, 16) else None,
        enforce_eager=bool(log.get("enforce_eager")), time_limit=30.0,
    )
    result = run_deploy(args)
    plan = result.plan
    if result.exit_code != 0 or plan.capacity is None:
        raise AssertionError(f"log {case['log']}: no plan: {plan.explanation or plan.verification}")
    first = plan.replicas[0].stages[0].devices[0].memory
    free = first.capacity_bytes - (first.total_bytes - first.kv_cache_bytes)
    logged = log["logged"]
    return Replay(
        log=case["log"], model=case["model"], gpu=case["device"], tp=log["tensor_parallel_size"], pp=log["pipeline_parallel_size"],
        version=_version(case, log), logged_tokens=logged.get("kv_cache_tokens"), predicted_tokens=plan.capacity.kv_cache_tokens,
        logged_concurrency=logged.get("max_concurrency"), predicted_concurrency=plan.capacity.max_concurrency,
        logged_available_gib=logged.get("available_kv_cache_gib"), predicted_available_gib=free / GiB,
        logged_weights_gib=logged.get("model_loading_gib"), predicted_weights_gib=first.weights_bytes / GiB,
        predicted_activations_gib=first.activations_bytes / GiB, predicted_overhead_gib=first.overhead_bytes / GiB,
        scored=bool(case.get("scored")),
    )


def replay_all() -> list[Replay]:
    """Every case with a model and a device, in order."""
    logs = load_logs()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in load_cases():
            if not (case.get("model") and case.get("device")):
                continue
            out.append(replay(case, logs[case["log"]], Path(tmp)))
    return out


def summary(replays: list[Replay]) -> dict[str, float]:
    """Median and 90th-percentile absolute token error over the scored logs."""
    errors = sorted(abs(r.token_error) for r in replays if r.scored and r.token_error is not None)
    within = sum(1 for e in errors if e <= 0.15) / len(errors)
    return {"logs": len(errors), "median": statistics.median(errors), "within_15": within,
            "p90": errors[min(len(errors) - 1, int(0.9 * len(errors)))]}
