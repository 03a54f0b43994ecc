"""`plan deploy`: plans on every bundled inventory, determinism, engine memory, infeasibility,
the verifier, and CP-SAT against brute force on random small instances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.candidates.recipes import build_candidates
from planner.cli import main
from planner.loaders.calibration import load_calibration
from planner.loaders.catalog import load_catalog_model
from planner.loaders.formats import build_precision_mix
from planner.loaders.inventory import build_cluster, load_inventory
from planner.loaders.yamlfile import parse_yaml_text
from planner.schemas.serving import ServeRequest
from planner.solver.assign import build_plan
from planner.solver.brute_force import brute_force_best
from planner.solver.solve import SolveStatus, solve_candidates
from planner.topology import build_topology
from planner.verify import check_plan
from tests.conftest import ROOT

INVENTORIES = sorted((ROOT / "inventories").glob("*.yaml"))
CAL = load_calibration()


def deploy(runner, *args: str):
    return runner.invoke(main, ["deploy", *args], catch_exceptions=False)


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_every_inventory_gets_a_verified_plan(runner, path: Path) -> None:
    result = deploy(runner, "--inventory", str(path), "--model", "llama-3.1-8b", "--users", "4", "--context", "4096", "--format", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["status"] in ("optimal", "feasible") and plan["verification"] == []
    assert sum(r["users"] for r in plan["replicas"]) == 4
    for replica in plan["replicas"]:
        layers = [s["layers"] for s in replica["stages"]]
        assert layers[0][0] == 0 and layers[-1][1] == 32
        assert all(a[1] == b[0] for a, b in zip(layers, layers[1:]))
        for stage in replica["stages"]:
            assert len(stage["devices"]) == stage["tensor_parallel_size"]
            for device in stage["devices"]:
                memory = device["memory"]
                assert memory["total_bytes"] <= memory["capacity_bytes"]
                assert {"weights_bytes", "kv_cache_bytes", "activations_bytes", "overhead_bytes", "total_bytes", "capacity_bytes"} <= set(memory)
                assert memory["gradients_bytes"] == memory["optimizer_bytes"] == 0  # serving
    for key in ("decode_tokens_per_s_per_user", "decode_tokens_per_s_total", "time_to_first_token_s", "bottleneck"):
        assert key in plan["performance"]
    assert plan["capacity"]["max_users"] >= 4 and plan["capacity"]["kv_cache_tokens"] >= 4096
    assert {"status", "wall_s", "objective", "bound"} <= set(plan["solver"])
    assert plan["solver"]["objective"] == pytest.approx(plan["performance"]["decode_tokens_per_s_total"], abs=0.01)
    assert deploy(runner, "--inventory", str(path), "--model", "llama-3.1-8b", "--users", "4").exit_code == 0


def _strip_timing(text: str) -> dict:
    data = json.loads(text)
    data["solver"]["wall_s"] = 0
    return data


def test_same_input_same_plan(runner, tmp_path: Path) -> None:
    args = ("--inventory", str(ROOT / "inventories" / "mixed-gpu-mac.yaml"), "--model", "llama-3.1-70b", "--weights", "q4_k_m",
            "--users", "3", "--context", "8192", "--format", "json")
    first, second = deploy(runner, *args), deploy(runner, *args)
    assert _strip_timing(first.output) == _strip_timing(second.output)
    out = tmp_path / "plans" / "plan.yaml"
    assert deploy(runner, *args, "-o", str(out)).exit_code == 0
    assert yaml.safe_load(out.read_text())["replicas"] == json.loads(first.output)["replicas"]
    assert [p.name for p in out.parent.iterdir()] == ["plan.yaml"]


def test_vllm_kv_capacity_on_one_rtx_3090(tmp_path: Path) -> None:
    # vLLM issue #10517: Llama-3.1-8B-Instruct on an RTX 3090, utilization 0.90, 20,000-token requests
    # (max_num_batched_tokens = 20,000): 1,952 blocks = 31,232 tokens. Within 10%.
    cluster = build_cluster(parse_yaml_text("name: one\nnodes:\n  - name: box\n    devices:\n      - type: rtx-3090\n", "one.yaml"))
    model = load_catalog_model("llama-3.1-8b")
    request = ServeRequest(users=1, context=20_000, prefill_chunk=20_000)
    candidates = build_candidates(model, build_precision_mix("bf16", "bf16"), request, cluster, CAL)
    result = solve_candidates(candidates)
    plan = build_plan(candidates, result, wall_s=0.0, request_summary={})
    tokens = plan.capacity.kv_cache_tokens
    assert tokens == pytest.approx(31_232, rel=0.10)
    assert plan.capacity.max_users == tokens // 20_000 == 1  # vLLM: "Maximum concurrency ... 1.56x"


def test_infeasible_request_explains_and_exits_1(runner) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model", "llama-3.1-70b",
                                  "--weights", "int4", "--kv-cache", "fp8", "--users", "32", "--context", "8192"])
    assert result.exit_code == 1, result.output
    assert "needs 39.5 GB of weights plus 42.9 GB of fp8 KV cache" in result.output
    assert "--context" in result.output and "--users" in result.output and "add " in result.output
    data = json.loads(runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model",
                                           "llama-3.1-405b", "--format", "json"]).output)
    assert data["status"] == "infeasible" and data["replicas"] == [] and data["explanation"]


def test_speed_floor_is_respected_or_explained(runner) -> None:
    args = ["deploy", "--inventory", str(ROOT / "inventories" / "mixed-gpu-mac.yaml"), "--model", "llama-3.1-70b",
            "--weights", "q4_k_m", "--format", "json"]
    slow = json.loads(runner.invoke(main, args + ["--min-tokens-per-s", "5"]).output)
    assert slow["performance"]["decode_tokens_per_s_per_user"] >= 5
    impossible = runner.invoke(main, args + ["--min-tokens-per-s", "500"])
    assert impossible.exit_code == 1
    assert "below the 500 asked for" in impossible.output or "500" in impossible.output


def test_bad_deploy_input_exits_2(runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  - name: a\n    devices:\n      - type: rtx-4009\n")
    result = runner.invoke(main, ["deploy", "--inventory", str(bad), "--model", "llama-3.1-8b"])
    assert result.exit_code == 2 and "did you mean 'rtx-4090'" in result.output
    result = runner.invoke(main, ["deploy", "--inventory", str(INVENTORIES[0]), "--model", "llama-3.1-8b", "--weights", "int5x"])
    assert result.exit_code == 2


def test_verifier_catches_a_tampered_plan() -> None:
    cluster = load_inventory(ROOT / "inventories" / "homelab.yaml")
    model = load_catalog_model("llama-3.1-70b")
    mix = build_precision_mix("q4_k_m", "fp16")
    request = ServeRequest(users=2, context=4096)
    candidates = build_candidates(model, mix, request, cluster, CAL)
    plan = build_plan(candidates, solve_candidates(candidates), wall_s=0.0, request_summary={})
    topology = build_topology(cluster)
    assert check_plan(plan, model, mix, request, cluster, CAL, topology) == []
    replica = plan.replicas[0]
    stage = replica.stages[0]
    bigger = stage.model_copy(update={"layers": (0, stage.layers[1] + 5)})
    broken = plan.model_copy(update={"replicas": [replica.model_copy(update={"stages": [bigger, *replica.stages[1:]]})]})
    problems = check_plan(broken, model, mix, request, cluster, CAL, topology)
    assert any("do not continue" in p for p in problems) or any("needs" in p for p in problems)
    twice = replica.model_copy(update={"stages": [stage, stage.model_copy(update={"layers": (stage.layers[1], 80)})]})
    problems = check_plan(plan.model_copy(update={"replicas": [twice]}), model, mix, request, cluster, CAL, topology)
    assert any("used twice" in p for p in problems)
    fewer = plan.model_copy(update={"replicas": [replica.model_copy(update={"users": 1})]})
    assert any("serve 1 users" in p for p in check_plan(fewer, model, mix, request, cluster, CAL, topology))


def test_time_limit_is_never_reported_as_infeasible() -> None:
    cluster = load_inventory(ROOT / "inventories" / "h100-256.yaml")
    candidates = build_candidates(load_catalog_model("llama-3.1-8b"), build_precision_mix("bf16", "bf16"),
                                  ServeRequest(users=500, context=4096), cluster, CAL)
    result = solve_candidates(candidates, time_limit_s=0.001)
    assert result.status in (SolveStatus.TIMED_OUT, SolveStatus.FEASIBLE, SolveStatus.OPTIMAL)


TYPES = ["rtx-3090", "rtx-4090", "rtx-3060-12gb", "a100-pcie-40gb", "m2-max-38c-64gb"]


@st.composite
def instances(draw):
    nodes = []
    for n in range(draw(st.integers(1, 3))):
        device = draw(st.sampled_from(TYPES))
        count = 1 if device.startswith("m") else draw(st.integers(1, 3))
        nodes.append({"name": f"n{n}", "devices": [{"type": device, "count": count}]})
    inventory = {"name": "random", "nodes": nodes, "network": "ethernet-10g"}
    model = draw(st.sampled_from(["qwen2.5-7b", "llama-3.1-8b", "qwen3-14b", "qwen2.5-32b"]))
    weights = draw(st.sampled_from(["bf16", "q8_0", "q4_k_m"]))
    users = draw(st.integers(1, 6))
    context = draw(st.sampled_from([2048, 8192, 32768]))
    return inventory, model, weights, users, context


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_cp_sat_matches_brute_force(instance) -> None:
    inventory, model_name, weights, users, context = instance
    cluster = build_cluster(parse_yaml_text(yaml.safe_dump(inventory), "random.yaml"))
    model = load_catalog_model(model_name)
    mix = build_precision_mix(weights, "fp16")
    request = ServeRequest(users=users, context=context)
    candidates = build_candidates(model, mix, request, cluster, CAL)
    result = solve_candidates(candidates, time_limit_s=20)
    brute = brute_force_best(candidates)
    if brute is None:
        assert result.status == SolveStatus.INFEASIBLE
        return
    assert result.status == SolveStatus.OPTIMAL
    assert result.objective == pytest.approx(brute[0], abs=1e-6)

    def key(copies: dict[int, int]) -> tuple:
        chosen = [(candidates.recipes[i], n) for i, n in copies.items()]
        n_recipes = len(candidates.recipes)
        return (sum(r.devices * n for r, n in chosen), sum((n_recipes - r.index) * n for r, n in chosen))

    assert key(result.copies) == key(brute[1])  # same devices and tie-breaker value: an equally good plan
    plan = build_plan(candidates, result, wall_s=0.0, request_summary={})
    assert check_plan(plan, model, mix, request, cluster, CAL, build_topology(cluster)) == []


@pytest.mark.parametrize(("inventory", "model_name", "weights", "users"),
                         [("homelab", "llama-3.1-70b", "q4_k_m", 2), ("mixed-gpu-mac", "llama-3.1-70b", "q4_k_m", 4)])
def test_never_slower_than_the_memory_proportional_split(inventory: str, model_name: str, weights: str, users: int) -> None:
    from planner.candidates.recipes import Recipe, RecipeBuilder

    cluster = load_inventory(ROOT / "inventories" / f"{inventory}.yaml")
    request = ServeRequest(users=users, context=8192)
    builder = RecipeBuilder(load_catalog_model(model_name), build_precision_mix(weights, "fp16"), request, cluster, CAL)
    baseline = builder.memory_proportional_recipe(users)
    assert isinstance(baseline, Recipe)
    candidates = builder.build()
    result = solve_candidates(candidates)
    ours = sum(candidates.recipes[i].tokens_per_s * n for i, n in result.copies.items())
    assert ours >= baseline.tokens_per_s * (1 - 1e-9)
    assert ours > 1.2 * baseline.tokens_per_s  # layers go where they run best, not merely where they fit


def test_tied_single_stage_and_sliding_capacity(runner) -> None:
    # A tied model on one stage holds its shared matrix once; sliding layers keep only their window.
    cluster = load_inventory(ROOT / "inventories" / "homelab.yaml")
    candidates = build_candidates(load_catalog_model("gemma-2-9b"), build_precision_mix("bf16", "bf16"),
                                  ServeRequest(users=3, context=4096), cluster, CAL)
    alone = [r for r in candidates.recipes if [s.unit.device_class.spec.id for s in r.stages] == ["rtx-4090"]]
    assert alone  # one RTX 4090 (21.4 GB for the engine) holds gemma-2-9b's 18.5 GB with its cache
    oss = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model", "gpt-oss-20b",
                            "--users", "4", "--context", "131072", "--format", "json").output)
    assert oss["capacity"]["max_users"] >= 4 and oss["capacity"]["kv_cache_tokens"] >= 131072


@pytest.mark.parametrize("args", [
    ("--model", "llama-3.1-8b", "--prompt-tokens", "100000"),
    ("--model", "llama-3.2-1b", "--mode", "train", "--global-batch-size", "3", "--micro-batch-size", "2"),
])
def test_inconsistent_settings_exit_2(runner, args) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "homelab.yaml"), *args])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
