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
from planner.schemas.plan import SolveStatus
from planner.solver.solve import solve_candidates
from planner.topology import build_topology
from planner.verify import check_serve_plan
from tests.conftest import ROOT, engine, plan_serving, serve_request
from planner.schemas.objectives import OBJECTIVES
from tests.oracle import _score as oracle_score
from tests.oracle import brute_force_best

INVENTORIES = sorted((ROOT / "inventories").glob("*.yaml"))
CAL = load_calibration()


def deploy(runner, *args: str):
    return runner.invoke(main, ["deploy", *args], catch_exceptions=False)


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_every_inventory_gets_a_verified_plan(runner, path: Path) -> None:
    result = deploy(runner, "--inventory", str(path), "--model", "llama-3.1-8b", "--users", "4", "--context", "4096", "--format", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["solver"]["status"] in ("optimal", "feasible") and plan["verification"] == []
    assert plan["schema_version"] == 5 and plan["mode"] == "serve"
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
                assert "gradients_bytes" not in memory and "optimizer_bytes" not in memory  # serving
    for key in ("decode_tokens_per_s_per_user", "decode_tokens_per_s_total", "time_to_first_token_s", "bottleneck"):
        assert key in plan["performance"]
    assert plan["capacity"]["max_users"] >= 4 and plan["capacity"]["kv_cache_tokens"] >= 4096
    assert {"status", "objective", "bound", "objective_unit"} <= set(plan["solver"]) and "wall_s" not in plan["solver"]
    assert plan["solver"]["objective"] == pytest.approx(plan["performance"]["decode_tokens_per_s_total"], abs=0.01)
    assert deploy(runner, "--inventory", str(path), "--model", "llama-3.1-8b", "--users", "4").exit_code == 0


def test_same_input_same_plan_byte_for_byte(runner, tmp_path: Path) -> None:
    args = ("--inventory", str(ROOT / "inventories" / "mixed-gpu-mac.yaml"), "--model", "llama-3.1-70b", "--weights", "q4_k_m",
            "--users", "3", "--context", "8192", "--format", "json")
    first, second = deploy(runner, *args), deploy(runner, *args)
    assert first.stdout == second.stdout
    out = tmp_path / "plans" / "plan.yaml"
    out.parent.mkdir()
    assert deploy(runner, *args, "-o", str(out)).exit_code == 0
    again = tmp_path / "plans" / "again.yaml"
    assert deploy(runner, *args, "-o", str(again)).exit_code == 0
    assert out.read_bytes() == again.read_bytes()
    assert yaml.safe_load(out.read_text())["replicas"] == json.loads(first.stdout)["replicas"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["again.yaml", "plan.yaml"]


def test_vllm_kv_capacity_on_one_rtx_3090(tmp_path: Path) -> None:
    # vLLM issue #10517: Llama-3.1-8B-Instruct on an RTX 3090, utilization 0.90, 20,000-token requests
    # (max_num_batched_tokens = 20,000): 1,952 blocks = 31,232 tokens. Within 10%.
    cluster = build_cluster(parse_yaml_text("name: one\nnodes:\n  - name: box\n    devices:\n      - type: rtx-3090\n", "one.yaml"))
    model = load_catalog_model("llama-3.1-8b")
    mix = build_precision_mix("bf16", "bf16")
    _, _, plan = plan_serving(model, mix, cluster, serve_request(model, mix, users=1, context=20_000, prefill_chunk=20_000))
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
    assert data["solver"]["status"] == "infeasible" and data["replicas"] == [] and data["explanation"]


@pytest.mark.parametrize(("inventory", "model", "weights", "like", "foreign"), [
    ("dgx-h100", "llama-3.1-405b", "bf16", "add 1 machine like dgx (8x h100-sxm, ", ("rtx-30", "rtx-40", "rtx-50", "rx-")),
    ("homelab", "llama-3.1-70b", "q8_0", "machine like gpu-box", ("h100", "rx-", "m2-", "m3-")),
])
def test_devices_to_add_fit_the_cluster(runner, inventory: str, model: str, weights: str, like: str,
                                        foreign: tuple[str, ...]) -> None:
    """More of the machines the cluster is made of first, then priced devices of its own kind:
    never gaming cards for a DGX, nor data-centre parts or Macs for a PCIe homelab box."""
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / f"{inventory}.yaml"), "--model", model,
                                  "--weights", weights, "--users", "4", "--format", "json"])
    assert result.exit_code == 1
    adds = [line for line in json.loads(result.output)["explanation"] if line.strip().startswith("- add")]
    assert adds and like in adds[0], adds
    assert not any(f in line for line in adds for f in foreign), adds


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
    _, _, plan = plan_serving(model, mix, cluster, serve_request(model, mix, "llama.cpp", users=2, context=4096))
    topology = build_topology(cluster)

    def check_plan(candidate, *_):
        return check_serve_plan(candidate, model, mix, cluster, CAL, topology, engine("llama.cpp"))

    assert check_plan(plan) == []
    replica = plan.replicas[0]
    stage = replica.stages[0]
    bigger = stage.model_copy(update={"layers": (0, stage.layers[1] + 5)})
    broken = plan.model_copy(update={"replicas": [replica.model_copy(update={"stages": [bigger, *replica.stages[1:]]})]})
    problems = check_plan(broken)
    assert any("do not continue" in p for p in problems) or any("needs" in p for p in problems)
    twice = replica.model_copy(update={"stages": [stage, stage.model_copy(update={"layers": (stage.layers[1], 80)})]})
    problems = check_plan(plan.model_copy(update={"replicas": [twice]}))
    assert any("used twice" in p for p in problems)
    fewer = plan.model_copy(update={"replicas": [replica.model_copy(update={"users": 1})]})
    assert any("serve 1 users" in p for p in check_plan(fewer))


def test_time_limit_is_never_reported_as_infeasible() -> None:
    cluster = load_inventory(ROOT / "inventories" / "h100-256.yaml")
    model, mix = load_catalog_model("llama-3.1-8b"), build_precision_mix("bf16", "bf16")
    candidates = build_candidates(model, mix, serve_request(model, mix, users=500, context=4096), cluster, CAL, engine())
    result = solve_candidates(candidates, time_limit_s=0.001)
    assert result.status in (SolveStatus.TIMED_OUT, SolveStatus.FEASIBLE, SolveStatus.OPTIMAL)


TYPES = ["rtx-3090", "rtx-4090", "rtx-3060-12gb", "a100-pcie-40gb", "m2-max-38c-64gb"]


@st.composite
def instances(draw):
    nodes = []
    for n in range(draw(st.integers(1, 3))):
        device = draw(st.sampled_from(TYPES))
        count = 1 if device.startswith("m") else draw(st.integers(1, 3))
        # Every device is priced so that the cost objective is defined.
        nodes.append({"name": f"n{n}", "devices": [{"type": device, "count": count, "price_usd": 500 + 250 * TYPES.index(device)}]})
    inventory = {"name": "random", "nodes": nodes, "network": "ethernet-10g"}
    model = draw(st.sampled_from(["qwen2.5-7b", "llama-3.1-8b", "qwen3-14b", "qwen2.5-32b"]))
    weights = draw(st.sampled_from(["bf16", "q8_0", "q4_k_m"]))
    users = draw(st.integers(1, 6))
    context = draw(st.sampled_from([2048, 8192, 32768]))
    objective = draw(st.sampled_from(sorted(OBJECTIVES)))
    return inventory, model, weights, users, context, objective


def _check_against_oracle(inventory: dict, model_name: str, weights: str, users: int, context: int, objective: str) -> None:
    cluster = build_cluster(parse_yaml_text(yaml.safe_dump(inventory), "random.yaml"))
    model = load_catalog_model(model_name)
    mix = build_precision_mix(weights, "fp16")
    engine_id = "llama.cpp" if weights in ("q8_0", "q4_k_m") else "vllm"
    request = serve_request(model, mix, engine_id, users=users, context=context, objective=objective)
    candidates, result, plan = plan_serving(model, mix, cluster, request, time_limit_s=20)
    brute = brute_force_best(candidates)
    if brute is None:
        assert result.status == SolveStatus.INFEASIBLE
        return
    assert result.status == SolveStatus.OPTIMAL
    chosen = [result.copies.get(r.index, 0) for r in candidates.recipes]
    assert oracle_score(candidates, chosen) == brute[0]  # every objective term and the tie-breaker agree
    assert check_serve_plan(plan, model, mix, cluster, CAL, build_topology(cluster), engine(engine_id)) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_cp_sat_matches_brute_force(instance) -> None:
    _check_against_oracle(*instance)


TWO_MACHINES = {"name": "two-machines", "network": "ethernet-10g", "nodes": [
    {"name": f"n{n}", "devices": [{"type": "rtx-3090", "count": 3, "price_usd": 700}]} for n in range(2)]}


@pytest.mark.parametrize("context", [2048, 8192, 32768])
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_runs_of_stages_stay_in_their_machine(context: int, objective: str) -> None:
    # Two machines of three: a replica of two stages must not straddle them over 10 GbE when its
    # speed was computed for a hop inside one machine (found by the property test above).
    _check_against_oracle(TWO_MACHINES, "qwen3-14b", "bf16", 2, context, objective)
    _check_against_oracle(TWO_MACHINES, "qwen3-14b", "bf16", 3, context, objective)
    _check_against_oracle(TWO_MACHINES, "qwen2.5-7b", "bf16", 5, context, objective)


MIXED = {"name": "mixed", "network": "ethernet-10g", "nodes": [
    {"name": "a", "devices": [{"type": "rtx-3090", "count": 2, "price_usd": 700}]},
    {"name": "b", "devices": [{"type": "rtx-4090", "count": 1, "price_usd": 1600}]},
    {"name": "c", "devices": [{"type": "rtx-3060-12gb", "count": 3, "price_usd": 250}]},
]}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_each_objective_is_optimal_against_the_oracle(objective: str) -> None:
    _check_against_oracle(MIXED, "qwen2.5-7b", "q8_0", 4, 8192, objective)


def test_objectives_choose_differently() -> None:
    model, mix = load_catalog_model("qwen2.5-7b"), build_precision_mix("q8_0", "fp16")
    cluster = build_cluster(parse_yaml_text(yaml.safe_dump(MIXED), "mixed.yaml"))
    plans = {o: plan_serving(model, mix, cluster, serve_request(model, mix, "llama.cpp", users=2, context=4096, objective=o))[2]
             for o in OBJECTIVES}
    cost = {o: sum(d.price_usd for d in cluster.devices if d.id in {x.id for r in p.replicas for s in r.stages for x in s.devices})
            for o, p in plans.items()}
    used = {o: cluster.devices.__len__() - len(p.unused_devices) for o, p in plans.items()}
    assert cost["cost"] == min(cost.values())
    assert used["devices"] == min(used.values())
    total = {o: p.performance.decode_tokens_per_s_total for o, p in plans.items()}
    assert total["throughput"] == max(total.values())
    slowest = {o: p.performance.decode_tokens_per_s_per_user for o, p in plans.items()}
    assert slowest["latency"] == max(slowest.values())


def test_cost_objective_needs_every_price(runner) -> None:
    result = runner.invoke(main, ["deploy", "--gpus", "2xa10", "--model", "llama-3.1-8b", "--objective", "cost"])
    assert result.exit_code == 2 and "needs a price for every device" in result.output and "a10" in result.output


@pytest.mark.parametrize(("inventory", "model_name", "weights", "users", "gain"),
                         [("homelab", "llama-3.1-70b", "q4_k_m", 2, 1.0), ("mixed-gpu-mac", "llama-3.1-70b", "q4_k_m", 4, 1.0)])
def test_never_slower_than_the_memory_proportional_split(inventory: str, model_name: str, weights: str, users: int,
                                                          gain: float) -> None:
    from planner.candidates.recipes import Recipe, RecipeBuilder

    cluster = load_inventory(ROOT / "inventories" / f"{inventory}.yaml")
    model, mix = load_catalog_model(model_name), build_precision_mix(weights, "fp16")
    builder = RecipeBuilder(model, mix, serve_request(model, mix, "llama.cpp", users=users, context=8192), cluster, CAL,
                            engine("llama.cpp"))
    baseline = builder.memory_proportional_recipe(users)
    assert isinstance(baseline, Recipe)
    candidates = builder.build()
    result = solve_candidates(candidates)
    ours = sum(candidates.recipes[i].tokens_per_s * n for i, n in result.copies.items())
    assert ours >= baseline.tokens_per_s * (1 - 1e-9)
    # llama.cpp's own split is a candidate, so the plan is never slower than it.
    assert ours >= gain * baseline.tokens_per_s


def test_tied_single_stage_and_sliding_capacity(runner) -> None:
    # A tied model on one stage holds its shared matrix once; sliding layers keep only their window.
    cluster = load_inventory(ROOT / "inventories" / "homelab.yaml")
    model, mix = load_catalog_model("gemma-2-9b"), build_precision_mix("bf16", "bf16")
    candidates = build_candidates(model, mix, serve_request(model, mix, users=3, context=4096), cluster, CAL, engine())
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
