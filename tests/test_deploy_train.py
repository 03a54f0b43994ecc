"""`plan deploy --mode train`: tp x pp x dp, ZeRO, offload and recomputation chosen together."""

from __future__ import annotations

import json

from planner.candidates.training import build_training_candidates
from planner.cli import main
from planner.loaders.calibration import load_calibration
from planner.loaders.catalog import load_catalog_model
from planner.loaders.formats import build_precision_mix
from planner.loaders.inventory import load_inventory
from planner.solver.training import solve_training
from planner.schemas.training import TrainRequest
from planner.topology import build_topology
from tests.conftest import ROOT, engine


def train(runner, inventory: str, *args: str):
    return runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / f"{inventory}.yaml"), "--mode", "train",
                                "--format", "json", *args], catch_exceptions=False)


def test_full_finetune_on_a_dgx(runner) -> None:
    result = train(runner, "dgx-h100", "--model", "llama-3.1-8b", "--global-batch-size", "64", "--sequence-length", "4096")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["mode"] == "train" and "replicas" not in plan and "capacity" not in plan  # no serving fields
    t, perf = plan["layout"], plan["performance"]
    assert t["tensor_parallel_size"] * t["pipeline_parallel_size"] * t["data_parallel_size"] <= 8
    assert 64 % (t["data_parallel_size"] * t["micro_batch_size"]) == 0
    assert 0 < perf["mfu"] < 0.6 and perf["tokens_per_s"] > 0
    assert plan["verification"] == []
    for rank in plan["ranks"]:
        for stage in rank["stages"]:
            for device in stage["devices"]:
                assert device["memory"]["total_bytes"] <= device["memory"]["capacity_bytes"]


def test_qlora_fits_where_full_training_does_not(runner) -> None:
    full = train(runner, "homelab", "--model", "llama-3.1-70b", "--global-batch-size", "8", "--sequence-length", "2048")
    assert full.exit_code == 1
    assert json.loads(full.output)["explanation"]
    qlora = train(runner, "homelab", "--model", "llama-3.1-70b", "--qlora", "--global-batch-size", "8", "--sequence-length", "2048")
    assert qlora.exit_code == 0, qlora.output
    plan = json.loads(qlora.output)
    assert plan["request"]["precision"]["weights"] == "nf4" and plan["verification"] == []


def test_fixed_choices_are_respected(runner) -> None:
    result = train(runner, "dgx-h100", "--model", "llama-3.1-8b", "--zero-stage", "3", "--recompute", "full",
                   "--offload", "none", "--global-batch-size", "32")
    t = json.loads(result.output)["layout"]
    assert (t["zero_stage"], t["recompute"], t["offload"]) == (3, "full", "none")


def test_more_devices_train_faster() -> None:
    model = load_catalog_model("llama-3.1-70b")
    request = TrainRequest(global_batch_size=256, micro_batch_size=1, sequence_length=4096)
    speeds = []
    for name in ("dgx-h100", "h100-2node-ib"):
        cluster = load_inventory(ROOT / "inventories" / f"{name}.yaml")
        candidates = build_training_candidates(model, build_precision_mix("bf16"), request, cluster, load_calibration(),
                                               build_topology(cluster), engine("deepspeed"))
        choice = solve_training(candidates)
        speeds.append(candidates.layouts[choice.index].tokens_per_s)
    assert speeds[1] > speeds[0]


def test_table_output(runner) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "workstation.yaml"), "--mode", "train",
                                  "--model", "llama-3.1-8b", "--lora-rank", "16", "--global-batch-size", "16"])
    assert result.exit_code == 0, result.output
    assert "ZeRO-" in result.output and "tokens/s" in result.output and "Verified" in result.output
