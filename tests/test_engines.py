"""Plans are for an engine: every bundled inventory planned with every engine obeys that engine's
profile (checked by planner/verify/engine.py, written apart from the candidate builder); formats
an engine cannot run are refused with the engines that can; the documented choice rule."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from planner.cli import main
from planner.loaders.engines import load_engine_catalog
from planner.loaders.inventory import load_inventory
from planner.loaders.plan import load_plan
from planner.verify.engine import check_serve_engine
from tests.conftest import ROOT

INVENTORIES = sorted((ROOT / "inventories").glob("*.yaml"))
ENGINES = load_engine_catalog()
SERVING = sorted(e for e, p in ENGINES.items() if p.kind == "serve")
# A model and weights each engine runs.
WORKLOAD = {"vllm": ("qwen2.5-7b", "bf16"), "sglang": ("qwen2.5-7b", "bf16"), "llama.cpp": ("qwen2.5-7b", "q4_k_m"),
            "exo": ("qwen2.5-7b", "mlx-4bit"), "mlx-lm": ("qwen2.5-7b", "mlx-4bit")}


def deploy(runner, *args: str):
    return runner.invoke(main, ["deploy", *args])


def _apple(path: Path) -> str:
    kinds = {d.spec.kind for d in load_inventory(path).devices}
    return "apple" if kinds == {"apple-silicon"} else ("mixed" if "apple-silicon" in kinds else "gpus")


@pytest.mark.parametrize("engine", SERVING)
@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_every_inventory_and_engine_obeys_the_profile(runner, tmp_path: Path, path: Path, engine: str) -> None:
    model, weights = WORKLOAD[engine]
    out = tmp_path / "plan.json"
    result = deploy(runner, "--inventory", str(path), "--model", model, "--weights", weights, "--engine", engine,
                    "--users", "3", "--context", "4096", "--time-limit", "30", "-o", str(out))
    profile = ENGINES[engine]
    runs_here = any(w.vendor == d.spec.vendor and d.spec.kind in w.kinds for d in load_inventory(path).devices
                    for w in profile.runs_on)
    if not runs_here:
        assert result.exit_code == 2 and f"{profile.name} runs on" in result.output, result.output
        return
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        return
    plan = load_plan(out)
    assert plan.request.engine.id == engine and plan.request.engine.version == profile.version
    assert plan.verification == []
    cluster = load_inventory(path)
    assert check_serve_engine(plan, profile, cluster, [{"bf16": "float", "q4_k_m": "gguf", "mlx-4bit": "mlx"}[weights]],
                              plan.request.precision.kv_cache and "float", 28) == []
    for replica in plan.replicas:
        sizes = {s.tensor_parallel_size for s in replica.stages}
        assert len(sizes) == 1
        if profile.layout.tensor_parallel == "none":
            # No tensor parallelism inside a machine; exo and mlx-lm may shard over whole machines.
            for stage in replica.stages:
                nodes = [d.node for d in stage.devices]
                assert stage.tensor_parallel_size == 1 or (
                    profile.layout.tensor_parallel_across_machines and len(set(nodes)) == len(nodes))
        kinds = {d.type for s in replica.stages for d in s.devices}
        if not profile.layout.mixed_device_types:
            assert len(kinds) == 1


def test_the_issue_layouts_are_ones_the_engine_runs(runner) -> None:
    # homelab, Llama-3.1-70B q4_k_m: llama.cpp splits by layer (no tensor-parallel pair of 3090s).
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model", "llama-3.1-70b",
                             "--weights", "q4_k_m", "--format", "json").stdout)
    assert data["request"]["engine"]["id"] == "llama.cpp"
    assert all(s["tensor_parallel_size"] == 1 for r in data["replicas"] for s in r["stages"])
    # vLLM with AWQ on the same box: one tensor-parallel size and one GPU model per replica.
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model", "llama-3.1-70b",
                             "--weights", "awq-int4", "--engine", "vllm", "--format", "json").stdout)
    for replica in data["replicas"]:
        assert len({s["tensor_parallel_size"] for s in replica["stages"]}) == 1
        assert len({d["type"] for s in replica["stages"] for d in s["devices"]}) == 1


def test_a_format_the_engine_cannot_run_names_the_engines_that_can(runner) -> None:
    result = deploy(runner, "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model", "llama-3.1-8b",
                    "--weights", "q4_k_m", "--engine", "vllm")
    assert result.exit_code == 2 and "engines that can: " in result.output and "llama.cpp" in result.output
    result = deploy(runner, "--inventory", str(ROOT / "inventories" / "workstation.yaml"), "--model", "llama-3.1-8b",
                    "--kv-cache", "fp8", "--engine", "sglang")
    assert result.exit_code == 2 and "fp8 KV cache" in result.output  # RTX A5000 is Ampere: SGLang's fp8 KV needs 8.9


@pytest.mark.parametrize(("inventory", "extra", "engine"), [
    ("homelab", (), "vllm"),
    ("homelab", ("--weights", "q4_k_m"), "llama.cpp"),
    ("homelab", ("--weights", "nf4"), "sglang"),
    ("mixed-gpu-mac", (), "llama.cpp"),
    ("mac-studio-cluster", (), "exo"),
    ("dgx-h100", ("--mode", "train", "--global-batch-size", "8"), "deepspeed"),
])
def test_the_choice_rule(runner, inventory: str, extra: tuple, engine: str) -> None:
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / f"{inventory}.yaml"), "--model",
                             "llama-3.2-1b", "--format", "json", *extra).stdout)
    assert data["request"]["engine"]["id"] == engine and data["request"]["engine"]["chosen_by"] == "rule"


def test_one_mac_gets_mlx_lm(runner, tmp_path: Path) -> None:
    path = tmp_path / "mac.yaml"
    path.write_text("name: mac\nnodes:\n  - name: studio\n    devices:\n      - type: m2-ultra-76c-192gb\n")
    data = json.loads(deploy(runner, "--inventory", str(path), "--model", "llama-3.2-1b", "--format", "json").stdout)
    assert data["request"]["engine"]["id"] == "mlx-lm"


def test_a_fallback_format_when_the_model_ships_one_the_engine_cannot_run(runner) -> None:
    # DeepSeek-V2-Lite ships bf16; DeepSeek-V3 ships block FP8, which llama.cpp cannot run: q8_0 then.
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "mac-studio-cluster.yaml"), "--model",
                             "deepseek-v3", "--engine", "llama.cpp", "--format", "json").stdout)
    assert data["request"]["precision"]["weights"] == "q8_0" and "default" in data["request"]["engine"]["reason"]


def test_gpt_oss_ships_mxfp4_experts(runner) -> None:
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "dgx-h100.yaml"), "--model", "gpt-oss-20b",
                             "--format", "json").stdout)
    assert data["request"]["precision"]["components"]["experts"] == "mxfp4"
    assert data["request"]["precision"]["components"]["attention"] == "bf16"


def test_mlx_lm_splits_evenly_and_only_when_the_layers_divide(runner, tmp_path: Path) -> None:
    path = tmp_path / "macs.yaml"
    path.write_text("name: macs\nnodes:\n  - name: mini\n    count: 3\n    devices:\n      - type: m4-pro-16c-64gb\n"
                    "network: thunderbolt-5\n")
    # Llama-3.1-70B has 80 layers: 3 machines cannot split them evenly (mlx-lm would drop two).
    data = json.loads(deploy(runner, "--inventory", str(path), "--model", "llama-3.1-70b", "--weights", "mlx-4bit",
                             "--engine", "mlx-lm", "--format", "json").stdout)
    for replica in data["replicas"]:
        counts = [s["layers"][1] - s["layers"][0] for s in replica["stages"]]
        assert len(set(counts)) == 1 and 80 % len(counts) == 0


def test_vllm_spreads_a_multi_machine_replica_evenly(runner) -> None:
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "h100-2node-ib.yaml"), "--model",
                             "llama-3.1-405b", "--weights", "bf16", "--engine", "vllm", "--format", "json").stdout)
    assert data["verification"] == []
    for replica in data["replicas"]:
        per_node = Counter(d["node"] for s in replica["stages"] for d in s["devices"])
        assert len(set(per_node.values())) == 1


def test_deepspeed_never_pairs_zero_3_with_a_pipeline(runner) -> None:
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "h100-2node-ib.yaml"), "--mode", "train",
                             "--model", "llama-3.1-70b", "--global-batch-size", "64", "--format", "json").stdout)
    layout = data["layout"]
    assert data["request"]["engine"]["id"] == "deepspeed" and layout["tensor_parallel_size"] == 1
    assert layout["pipeline_parallel_size"] == 1 or layout["zero_stage"] <= 1


def test_megatron_uses_its_own_pipeline_split_and_no_zero_beyond_1(runner) -> None:
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "h100-2node-ib.yaml"), "--mode", "train",
                             "--model", "llama-3.1-70b", "--engine", "megatron", "--global-batch-size", "64",
                             "--format", "json").stdout)
    assert data["verification"] == []
    layout = data["layout"]
    assert layout["zero_stage"] <= 1 and layout["offload"] == "none"
    counts = [s["layers"][1] - s["layers"][0] for s in data["ranks"][0]["stages"]]
    assert len(set(counts[1:-1])) <= 1 and sum(counts) == 80


def test_an_engine_of_the_other_mode_is_refused(runner) -> None:
    result = deploy(runner, "--inventory", str(ROOT / "inventories" / "dgx-h100.yaml"), "--model", "llama-3.2-1b",
                    "--engine", "deepspeed")
    assert result.exit_code == 2 and "training engine" in result.output


def test_the_checker_catches_a_layout_the_engine_cannot_run(runner, tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    assert deploy(runner, "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model", "llama-3.1-70b",
                  "--weights", "q4_k_m", "-o", str(out)).exit_code == 0
    plan = load_plan(out)
    cluster = load_inventory(ROOT / "inventories" / "homelab.yaml")
    assert check_serve_engine(plan, ENGINES["llama.cpp"], cluster, ["gguf"], "float", 80) == []
    stage = plan.replicas[0].stages[0]
    bad = stage.model_copy(update={"tensor_parallel_size": 2})
    tampered = plan.model_copy(update={"replicas": [plan.replicas[0].model_copy(update={"stages": [bad, *plan.replicas[0].stages[1:]]})]})
    problems = check_serve_engine(tampered, ENGINES["llama.cpp"], cluster, ["gguf"], "float", 80)
    assert any("no tensor parallelism" in p for p in problems) and any("differ between stages" in p for p in problems)
    assert any("does not run gguf" in p for p in check_serve_engine(plan, ENGINES["vllm"], cluster, ["gguf"], "float", 80))
