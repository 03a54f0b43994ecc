"""The plan document: versioned, typed, round-trips through its published schema; a plan records
every input that shaped it; the verifier catches a wrong figure in it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from planner.cli import main
from planner.estimate.stage import StageSizer
from planner.loaders.calibration import load_calibration
from planner.loaders.catalog import load_catalog_model
from planner.loaders.formats import build_precision_mix
from planner.loaders.inventory import build_cluster, load_inventory
from planner.loaders.plan import load_plan
from planner.loaders.yamlfile import parse_yaml_text
from planner.schemas.plan import SCHEMA_VERSION, ServePlan, build_plan_schema
from planner.topology import build_topology
from planner.verify import check_serve_plan
from tests.conftest import ROOT, engine, plan_serving, serve_request

HOMELAB = str(ROOT / "inventories" / "homelab.yaml")
SCHEMA = build_plan_schema()


def deploy(runner, *args: str):
    return runner.invoke(main, ["deploy", *args], catch_exceptions=False)


def test_serving_plan_round_trips_through_file_schema_and_show(runner, tmp_path: Path) -> None:
    args = ("--inventory", HOMELAB, "--model", "llama-3.1-8b", "--users", "4", "--weights", "q8_0")
    printed = deploy(runner, *args, "--format", "json")
    assert printed.exit_code == 0, printed.output
    data = json.loads(printed.stdout)
    jsonschema.validate(data, SCHEMA)
    saved = tmp_path / "plan.yaml"
    assert deploy(runner, *args, "-o", str(saved)).exit_code == 0
    plan = load_plan(saved)
    assert isinstance(plan, ServePlan) and plan.model_dump(mode="json") == data
    shown = runner.invoke(main, ["show", str(saved), "--format", "json"])
    assert shown.exit_code == 0 and shown.stdout == printed.stdout
    as_json = tmp_path / "plan.json"
    assert deploy(runner, *args, "-o", str(as_json)).exit_code == 0
    assert json.loads(as_json.read_text()) == data


def test_the_request_records_every_input(runner) -> None:
    data = json.loads(deploy(runner, "--inventory", HOMELAB, "--model", "llama-3.1-8b", "--users", "3", "--context", "8192",
                             "--prompt-tokens", "1000", "--prefill-chunk", "1024", "--gpu-memory-utilization", "0.8",
                             "--overhead", "0.05", "--runtime-reserve-gib", "0.5", "--objective", "latency",
                             "--time-limit", "30", "--kv-cache", "fp8", "--format", "json").stdout)
    request = data["request"]
    assert (request["users"], request["context"], request["prompt_tokens"], request["prefill_chunk"]) == (3, 8192, 1000, 1024)
    assert (request["gpu_memory_utilization"], request["overhead_factor"], request["objective"]) == (0.8, 0.05, "latency")
    assert request["runtime_reserve_bytes"] == int(0.5 * 2**30) and request["time_limit_s"] == 30.0
    assert request["block_size"] is None and request["precision"]["kv_cache"] == "fp8"
    assert request["engine"]["id"] == "vllm" and data["replicas"]
    for replica in data["replicas"]:  # the launch runs with what was asked, the engine's defaults elsewhere
        assert (replica["engine"]["batch_tokens"], replica["engine"]["memory_fraction"]) == (1024, 0.8)
        assert replica["engine"]["block_size"] == 16 and replica["engine"]["context_tokens"] == 8192
    assert request["model"]["kind"] == "catalog" and request["model"]["name"] == "llama-3.1-8b"
    assert request["model"]["digest"].startswith("sha256:") and data["inventory"]["digest"].startswith("sha256:")
    assert data["inventory"]["path"] == HOMELAB and data["schema_version"] == SCHEMA_VERSION == 5
    assert request["engine"]["id"] == "vllm" and request["engine"]["chosen_by"] == "rule" and request["engine"]["version"]


def test_a_training_plan_has_no_serving_fields(runner) -> None:
    data = json.loads(deploy(runner, "--inventory", str(ROOT / "inventories" / "workstation.yaml"), "--mode", "train",
                             "--model", "llama-3.2-1b", "--global-batch-size", "8", "--format", "json").stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["mode"] == "train"
    for serving in ("replicas", "capacity", "users", "decode_tokens_per_s_per_user"):
        assert serving not in data and serving not in data["request"]
    assert data["layout"]["global_batch_size"] == 8 and data["ranks"]


def test_digests_follow_the_inputs() -> None:
    cluster = load_inventory(ROOT / "inventories" / "homelab.yaml")
    model, mix = load_catalog_model("qwen2.5-7b"), build_precision_mix("q8_0", "fp16")
    first = plan_serving(model, mix, cluster, serve_request(model, mix, users=2))[2]
    again = plan_serving(model, mix, cluster, serve_request(model, mix, users=2))[2]
    assert first.inventory.digest == again.inventory.digest and first.request.model.digest == again.request.model.digest
    text = (ROOT / "inventories" / "homelab.yaml").read_text().replace("rtx-3090", "rtx-4090", 1)
    changed = build_cluster(parse_yaml_text(text, "changed.yaml"))
    other = plan_serving(model, mix, changed, serve_request(model, mix, users=2))[2]
    assert other.inventory.digest != first.inventory.digest
    bigger = load_catalog_model("qwen2.5-14b")
    assert serve_request(bigger, mix).model.digest != first.request.model.digest


@pytest.mark.parametrize(("version", "message"), [(1, "schema_version 1"), (99, "schema_version 99"), ("2", "schema_version '2'")])
def test_another_schema_version_is_a_clear_error(runner, tmp_path: Path, version, message: str) -> None:
    saved = tmp_path / "plan.yaml"
    deploy(runner, "--inventory", HOMELAB, "--model", "llama-3.2-1b", "-o", str(saved))
    data = yaml.safe_load(saved.read_text())
    data["schema_version"] = version
    saved.write_text(yaml.safe_dump(data))
    result = runner.invoke(main, ["show", str(saved)])
    assert result.exit_code == 2 and message in result.output and "re-run `plan deploy`" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_file_that_is_not_a_plan(runner, tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text((ROOT / "inventories" / "homelab.yaml").read_text())
    result = runner.invoke(main, ["show", str(path)])
    assert result.exit_code == 2 and "no schema_version" in result.output


def test_plan_schema_command_prints_the_published_schema(runner) -> None:
    result = runner.invoke(main, ["schema", "plan"])
    assert result.exit_code == 0 and json.loads(result.stdout) == SCHEMA
    assert set(SCHEMA["discriminator"]["mapping"]) == {"serve", "train"}


def test_the_verifier_recomputes_instead_of_trusting_the_stage_sizer(monkeypatch) -> None:
    """A bug in the one function that sizes stages (here: weights under-counted by 10%) is caught,
    because the verifier sums the tensors itself."""
    cluster = load_inventory(ROOT / "inventories" / "homelab.yaml")
    model, mix = load_catalog_model("llama-3.1-70b"), build_precision_mix("q4_k_m", "fp16")
    original = StageSizer.memory

    def under_counted(self, *args, **kwargs):
        memory = original(self, *args, **kwargs)
        return type(memory)(**{**memory.__dict__, "weights_bytes": memory.weights_bytes * 0.9})

    monkeypatch.setattr(StageSizer, "memory", under_counted)
    _, _, plan = plan_serving(model, mix, cluster, serve_request(model, mix, "llama.cpp", users=2, context=4096))
    problems = check_serve_plan(plan, model, mix, cluster, load_calibration(), build_topology(cluster), engine("llama.cpp"))
    assert any("the plan says" in p and "recomputed" in p for p in problems)
