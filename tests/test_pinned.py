"""Pinned layouts: --tensor-parallel-size, --pipeline-parallel-size, --data-parallel-size and
--layer-split restrict the search to that layout and report it, or say exactly why it cannot run."""

from __future__ import annotations

import json

import pytest

from planner.cli import main
from tests.conftest import ROOT

H100X2 = str(ROOT / "inventories" / "h100-2node-ib.yaml")
DGX = str(ROOT / "inventories" / "dgx-h100.yaml")


def plan(runner, *args: str) -> dict:
    result = runner.invoke(main, ["deploy", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_tensor_and_pipeline_sizes_are_held(runner) -> None:
    data = plan(runner, "--inventory", H100X2, "--model", "llama-3.1-70b", "-tp", "4", "-pp", "2", "--users", "8")
    assert data["request"]["tensor_parallel_size"] == 4 and data["request"]["pipeline_parallel_size"] == 2
    for replica in data["replicas"]:
        assert [s["tensor_parallel_size"] for s in replica["stages"]] == [4, 4]
        # Identical stages get vLLM's balanced split.
        assert [s["layers"] for s in replica["stages"]] == [[0, 40], [40, 80]]


def test_replicas_and_layer_split_are_held(runner) -> None:
    data = plan(runner, "--inventory", DGX, "--model", "llama-3.1-70b", "-tp", "2", "--layer-split", "50,30", "-dp", "2",
                "--users", "4")
    assert len(data["replicas"]) == 2 and data["request"]["layer_split"] == [50, 30]
    for replica in data["replicas"]:
        assert [s["layers"] for s in replica["stages"]] == [[0, 50], [50, 80]]


def test_the_pinned_layout_is_reported_even_when_slower(runner) -> None:
    free = plan(runner, "--inventory", DGX, "--model", "llama-3.1-8b", "--users", "8")
    pinned = plan(runner, "--inventory", DGX, "--model", "llama-3.1-8b", "--users", "8", "-tp", "1", "-pp", "4", "-dp", "1")
    assert pinned["performance"]["decode_tokens_per_s_total"] <= free["performance"]["decode_tokens_per_s_total"]
    assert len(pinned["replicas"]) == 1 and len(pinned["replicas"][0]["stages"]) == 4


@pytest.mark.parametrize(("args", "code", "message"), [
    (("-tp", "3"), 2, "64 attention heads do not divide across 3"),
    (("-pp", "2", "--layer-split", "40,30,10"), 2, "--layer-split lists 3 stages"),
    (("--layer-split", "40,30"), 2, "the stages hold 70 layers, the model has 80"),
    (("--layer-split", "40,x"), 2, "--layer-split"),
    (("-tp", "8", "-pp", "2", "-dp", "1", "--engine", "vllm", "--context", "131072", "--users", "64"), 1, "needs"),
])
def test_a_layout_that_cannot_run_says_why(runner, args: tuple, code: int, message: str) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", DGX, "--model", "llama-3.1-70b", *args])
    assert result.exit_code == code, result.output
    assert message in result.output


def test_an_engine_without_tensor_parallelism(runner) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model",
                                  "llama-3.1-8b", "--weights", "q4_k_m", "-tp", "2"])
    assert result.exit_code == 1 and "llama.cpp runs no tensor parallelism" in result.output


def test_pinned_training_layout(runner) -> None:
    data = plan(runner, "--inventory", H100X2, "--mode", "train", "--model", "llama-3.1-70b", "--engine", "megatron",
                "-tp", "8", "-pp", "2", "-dp", "1", "--global-batch-size", "32")
    layout = data["layout"]
    assert (layout["tensor_parallel_size"], layout["pipeline_parallel_size"], layout["data_parallel_size"]) == (8, 2, 1)


def test_plan_memory_takes_a_layer_split(runner) -> None:
    result = runner.invoke(main, ["memory", "--model", "llama-3.1-70b", "--layer-split", "42,38", "--format", "json"])
    data = json.loads(result.stdout)
    assert [d["layers"] for d in data["devices"]] == [[0, 42], [42, 80]]
    assert data["parallelism"]["pipeline_parallel_size"] == 2
