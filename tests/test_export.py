"""Exports: golden bundles on the bundled inventories, what each target refuses, llama.cpp's own
layer rule applied to the --tensor-split weights, `plan check`, `plan diff`, and writing bundles."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cli import main
from planner.export import ExportRefused
from planner.export.context import ExportContext
from planner.export.llamacpp import tensor_split_weights
from planner.loaders.catalog import load_model
from planner.loaders.exports import load_export_assets
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.plan import load_plan
from tests.export_cases import CASES, ExportCase

ROOT = Path(__file__).resolve().parent.parent
INVENTORIES = ROOT / "inventories"
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
UPDATE = os.environ.get("PLANNER_UPDATE_GOLDEN") == "1"
BY_NAME = {c.name: c for c in CASES}


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="session")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every case's plan, written once per session (plan deploy -o)."""
    folder = tmp_path_factory.mktemp("plans")
    out: dict[str, Path] = {}
    for case in CASES:
        path = folder / f"{case.name}.yaml"
        code, output = _invoke("deploy", "--inventory", str(INVENTORIES / case.inventory), *case.deploy, "-o", str(path),
                               "--format", "json")
        assert code == 0, (case.name, output[-2000:])
        out[case.name] = path
    return out


def _export(plans: dict[str, Path], case: ExportCase, out: Path) -> dict[str, str]:
    code, output = _invoke("export", str(plans[case.name]), "--to", case.target, "--out", str(out), *case.export)
    assert code == 0, output
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


def _context(plan_path: Path, **extra) -> tuple:
    plan = load_plan(plan_path)
    model = load_model(plan.request.model.name)
    return plan, ExportContext(model=model, hardware=dict(load_hardware_catalog()), assets=load_export_assets(), **extra)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_export_matches_its_golden_files(case: ExportCase, plans: dict[str, Path], tmp_path: Path) -> None:
    files = _export(plans, case, tmp_path / "out")
    assert ".plan-export" in files and "README.md" in files
    golden = GOLDEN / case.name
    if UPDATE:
        if golden.exists():
            for old in sorted(golden.rglob("*"), reverse=True):
                old.unlink() if old.is_file() else old.rmdir()
        for name, text in files.items():
            (golden / name).parent.mkdir(parents=True, exist_ok=True)
            (golden / name).write_text(text)
    kept = {str(p.relative_to(golden)): p.read_text() for p in sorted(golden.rglob("*")) if p.is_file()}
    assert sorted(files) == sorted(kept)
    for name in files:
        assert files[name] == kept[name], f"{case.name}/{name} differs from its golden file"


def test_export_is_byte_for_byte_repeatable(plans: dict[str, Path], tmp_path: Path) -> None:
    case = BY_NAME["llamacpp-gpu-and-mac"]
    assert _export(plans, case, tmp_path / "a") == _export(plans, case, tmp_path / "b")


def test_every_script_says_what_it_runs_and_parses_as_bash(plans: dict[str, Path], tmp_path: Path) -> None:
    import subprocess

    for case in CASES:
        files = _export(plans, case, tmp_path / case.name)
        for name, text in files.items():
            if name.endswith(".sh"):
                assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
                subprocess.run(["bash", "-n", str(tmp_path / case.name / name)], check=True)
                assert os.access(tmp_path / case.name / name, os.X_OK)


def test_addresses_from_the_inventory_replace_placeholders(plans: dict[str, Path], tmp_path: Path) -> None:
    files = _export(plans, BY_NAME["vllm-405b-two-nodes"], tmp_path / "out")
    node1 = files["replica-0/hgx-2.sh"]
    assert "--master-addr 10.0.0.1 --master-port 29501 --headless" in node1 and "${" not in node1
    assert "export VLLM_PP_LAYER_PARTITION=63,63" in node1 and "--node-rank 1" in node1


def test_placeholders_are_listed_and_guarded(plans: dict[str, Path], tmp_path: Path) -> None:
    files = _export(plans, BY_NAME["llamacpp-gpu-and-mac"], tmp_path / "out")
    server = files["replica-0/gpu-box-server.sh"]
    assert '[ -n "${MODEL_GGUF:-}" ] || { echo \'set MODEL_GGUF: ' in server and '[ -n "${STUDIO_ADDR:-}" ]' in server
    assert "| `STUDIO_ADDR` |" in files["README.md"] and "| `MODEL_GGUF` |" in files["README.md"]
    assert "never run it on an open network" in files["replica-0/studio-rpc-0.sh"]


# ----------------------------------------------------------------------------- llama.cpp's own rule

def llama_cpp_layer_devices(tensor_split: list[float], n_layer: int, n_gpu_layers: int) -> list[int]:
    """Device of every slot (n_layer repeating layers, then the output layer), -1 for the CPU:
    src/llama-model.cpp load_tensors at build b11434, in its float32 arithmetic."""
    splits = np.array(tensor_split, dtype=np.float32)
    split_sum = np.float32(0.0)
    for i in range(len(splits)):
        split_sum = np.float32(split_sum + splits[i])
        splits[i] = split_sum
    splits = (splits / split_sum).astype(np.float32)
    i_gpu_start = max(n_layer + 1 - n_gpu_layers, 0)
    act = min(n_gpu_layers, n_layer + 1)
    out = []
    for il in range(n_layer + 1):
        if il < i_gpu_start or il - i_gpu_start >= act:
            out.append(-1)
            continue
        value = np.float32(np.float32(il - i_gpu_start) / np.float32(act))
        out.append(int(np.searchsorted(splits, value, side="right")))  # std::upper_bound
    return out


def _ranges(devices: list[int]) -> list[int]:
    return [devices.count(k) for k in range(max(devices) + 1)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=90), min_size=1, max_size=15))
def test_tensor_split_weights_give_the_plans_layers_under_llama_cpps_rule(layers: list[int]) -> None:
    devices = llama_cpp_layer_devices(tensor_split_weights(layers), sum(layers), sum(layers) + 1)
    expected = layers[:-1] + [layers[-1] + 1]  # the output slot goes to the last device
    assert -1 not in devices and _ranges(devices) == expected


def test_the_naive_split_loses_the_output_slot() -> None:
    # 80 layers on two devices, 62 and 18: the weights "62,18" put 63 slots on the first device.
    assert _ranges(llama_cpp_layer_devices([62, 18], 80, 81)) == [63, 18]
    assert _ranges(llama_cpp_layer_devices(tensor_split_weights([62, 18]), 80, 81)) == [62, 19]


def test_golden_llama_cpp_split_reproduces_the_plan(plans: dict[str, Path]) -> None:
    plan = load_plan(plans["llamacpp-gpu-and-mac"])
    layers = [s.layers[1] - s.layers[0] for s in plan.replicas[0].stages]
    assert layers == [30, 30, 20]
    assert _ranges(llama_cpp_layer_devices([29.5, 30, 21.5], 80, 81)) == [30, 30, 21]


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize(("case", "target", "expected"), [
    ("vllm-405b-two-nodes", "sglang", "made for vLLM"),
    ("exo-405b", "mlx-lm", "made for exo"),
    ("llamacpp-homelab", "kubernetes", "manifests are written for vLLM and SGLang"),
    ("deepspeed-8b", "vllm", "made for DeepSpeed"),
])
def test_a_target_other_than_the_plans_engine_is_refused_and_nothing_written(
        case: str, target: str, expected: str, plans: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _invoke("export", str(plans[case]), "--to", target, "--out", str(out))
    assert code == 2 and expected in output and output.count("\n") == 1
    assert not out.exists()


def test_exporters_refuse_what_their_engine_cannot_run(plans: dict[str, Path]) -> None:
    from planner.export.apple import to_mlxlm
    from planner.export.training import to_deepspeed
    from planner.export.vllm import to_vllm

    exo_plan, ctx = _context(plans["exo-405b"])
    with pytest.raises(ExportRefused, match="vllm does not run on Apple M3 Ultra"):
        to_vllm(exo_plan, ctx)
    mlx_plan, ctx = _context(plans["mlxlm-405b-pipeline"])
    replica = mlx_plan.replicas[0]
    uneven = [replica.stages[0].model_copy(update={"layers": (0, 70)}), replica.stages[1].model_copy(update={"layers": (70, 126)})]
    skewed = mlx_plan.model_copy(update={"replicas": [replica.model_copy(update={"stages": uneven})]})
    with pytest.raises(ExportRefused, match="unevenly"):
        to_mlxlm(skewed, ctx)
    megatron_plan, ctx = _context(plans["megatron-70b"])
    with pytest.raises(ExportRefused, match="tensor parallelism"):
        to_deepspeed(megatron_plan, ctx)
    failing = megatron_plan.model_copy(update={"verification": ["hgx-1/gpu0 needs 90 GB; it has 80 GB"]})
    with pytest.raises(ExportRefused, match="fails its verification"):
        to_deepspeed(failing, ctx)


def test_deepspeed_config_keeps_deepspeeds_batch_rule(plans: dict[str, Path], tmp_path: Path) -> None:
    import json

    for name in ("deepspeed-8b", "deepspeed-70b-offload"):
        files = _export(plans, BY_NAME[name], tmp_path / name)
        config = json.loads(files["ds_config.json"])
        plan = load_plan(plans[name])
        assert config["train_batch_size"] == (config["train_micro_batch_size_per_gpu"] * config["gradient_accumulation_steps"]
                                              * plan.layout.data_parallel_size)
        offload = config["zero_optimization"].get("offload_optimizer")
        assert (offload is not None) == (plan.layout.offload != "none")


def test_megatron_layout_string_for_uneven_stages() -> None:
    from planner.export.training import megatron_layout

    assert megatron_layout([42, 38]) == "Et*42|t*38L"
    assert megatron_layout([20, 20, 20, 20]) is None
    assert megatron_layout([10, 30, 30, 10]) == "Et*10|t*30|t*30|t*10L"


# ----------------------------------------------------------------------------- deploy --export, writing

def test_deploy_exports_in_the_same_run(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    code, output = _invoke("deploy", "--inventory", str(INVENTORIES / "dgx-h100.yaml"), "--model", "llama-3.1-8b",
                           "--users", "8", "--context", "4096", "--export", "vllm", "--out", str(out))
    assert code == 0, output
    assert (out / "README.md").exists() and (out / "replica-0" / "dgx.sh").exists()


def test_export_never_replaces_a_folder_of_other_files(plans: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, output = _invoke("export", str(plans["vllm-405b-two-nodes"]), "--to", "vllm", "--out", str(out))
    assert code == 2 and "holds other files" in output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_earlier_export_is_replaced_whole(plans: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    _export(plans, BY_NAME["vllm-70b-replicas"], out)
    assert (out / "replica-3" / "dgx.sh").exists()
    _export(plans, BY_NAME["vllm-405b-two-nodes"], out)
    assert not (out / "replica-3").exists() and (out / "replica-0" / "hgx-1.sh").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- plan check, plan diff

def test_check_holds_on_the_inventory_planned_on(plans: dict[str, Path]) -> None:
    code, output = _invoke("check", str(plans["vllm-405b-two-nodes"]), "--inventory", str(INVENTORIES / "h100-2node-ib.yaml"))
    assert code == 0 and "holds" in output


def _write_inventory(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "now.yaml"
    path.write_text(text)
    return path


def test_check_names_a_swapped_device_a_missing_node_and_less_memory(plans: dict[str, Path], tmp_path: Path) -> None:
    original = (INVENTORIES / "h100-2node-ib.yaml").read_text()
    swapped = original.replace("      - type: h100-sxm\n        count: 8",
                               "      - type: h100-sxm\n        count: 7\n      - type: a100-sxm-80gb")
    code, output = _invoke("check", str(plans["vllm-405b-two-nodes"]), "--inventory", str(_write_inventory(tmp_path, swapped)))
    assert code == 1 and "hgx-1/gpu7 is now a100-sxm-80gb; the plan put h100-sxm there" in output
    one = yaml.safe_load(original)
    one["nodes"][0].update(count=1, address="10.0.0.1")
    one["network"] = "infiniband-ndr"
    code, output = _invoke("check", str(plans["vllm-405b-two-nodes"]), "--inventory", str(_write_inventory(tmp_path, yaml.safe_dump(one))))
    assert code == 1 and "hgx-1/gpu0 (h100-sxm) is not in the inventory: its machine is gone" in output
    busy = yaml.safe_load(original)
    busy["nodes"][0]["used_gb"] = 30
    code, output = _invoke("check", str(plans["vllm-405b-two-nodes"]), "--inventory", str(_write_inventory(tmp_path, yaml.safe_dump(busy))))
    assert code == 1 and "needs" in output and "hgx-1/gpu0" in output


def test_check_notices_a_changed_model_file(tmp_path: Path) -> None:
    import json

    from tests.conftest import tiny_config

    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config()))
    plan = tmp_path / "plan.yaml"
    code, output = _invoke("deploy", "--inventory", str(INVENTORIES / "dgx-h100.yaml"), "--model", str(config),
                           "--users", "2", "--context", "512", "-o", str(plan))
    assert code == 0, output
    config.write_text(json.dumps(tiny_config(num_hidden_layers=6)))
    code, output = _invoke("check", str(plan), "--inventory", str(INVENTORIES / "dgx-h100.yaml"))
    assert code == 1 and "changed since the plan was made" in output
    config.unlink()
    code, output = _invoke("check", str(plan), "--inventory", str(INVENTORIES / "dgx-h100.yaml"))
    assert code == 1 and "cannot be read any more" in output


def test_check_bad_input_is_exit_2(plans: dict[str, Path], tmp_path: Path) -> None:
    bad = _write_inventory(tmp_path, "name: x\nnodes: []\n")
    code, output = _invoke("check", str(plans["vllm-405b-two-nodes"]), "--inventory", str(bad))
    assert code == 2 and output.startswith("error: ") and output.count("\n") == 1
    code, output = _invoke("check", str(tmp_path / "missing.yaml"), "--inventory", str(INVENTORIES / "dgx-h100.yaml"))
    assert code == 2


def test_diff_names_what_changed(plans: dict[str, Path]) -> None:
    code, output = _invoke("diff", str(plans["vllm-405b-two-nodes"]), str(plans["vllm-405b-two-nodes"]))
    assert code == 0 and "agree" in output
    code, output = _invoke("diff", str(plans["vllm-70b-replicas"]), str(plans["vllm-70b-uneven"]))
    assert code == 1
    assert "request.users: 64 -> 4 (-93.8%)" in output
    assert "replica 0: stages.1.layers: None -> '42-79'" in output
    assert "replica 3: removed" in output and "performance.decode_tokens_per_s_per_user" in output


# ----------------------------------------------------------------------------- inventory addresses

@pytest.mark.parametrize(("node", "message"), [
    ({"name": "a", "count": 2, "address": ["10.0.0.1"]}, "lists 1 addresses for 2 machines"),
    ({"name": "a", "address": "bad address!"}, "is not a host name or an IP address"),
    ({"name": "a", "count": 2, "address": ["10.0.0.1", "10.0.0.1"]}, "is given to both a-1 and a-2"),
    ({"name": "a", "ports": {"api": 70000}}, "ports.api"),
])
def test_inventory_addresses_are_checked(node: dict, message: str, tmp_path: Path) -> None:
    node = {**node, "devices": [{"type": "h100-sxm"}]}
    path = _write_inventory(tmp_path, yaml.safe_dump({"name": "t", "nodes": [node], "network": "ethernet-10g"}))
    code, output = _invoke("inventory", "validate", str(path))
    assert code == 2 and message in output, output


# ----------------------------------------------------------------------------- Kubernetes schemas

@pytest.mark.parametrize("name", [c.name for c in CASES if c.target == "kubernetes"])
def test_manifests_pass_the_lws_crd_and_kubernetes_schemas(name: str, plans: dict[str, Path], tmp_path: Path) -> None:
    from tests.engines.k8s_check import check_manifests

    files = _export(plans, BY_NAME[name], tmp_path / "out")
    docs = list(yaml.safe_load_all(files["manifests.yaml"]))
    assert check_manifests(docs) == []
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == (["LeaderWorkerSet", "Service"] if "405b" in name else ["Deployment", "Service"])
    gpus = [c["resources"]["limits"]["nvidia.com/gpu"] for d in docs for c in _containers(d)]
    plan = load_plan(plans[name])
    per_pod = {str(len([x for x in plan.replicas[0].stages[0].devices if x.node == plan.replicas[0].stages[0].devices[0].node]))}
    assert set(gpus) == per_pod
    selectors = [_pods(d) for d in docs if d["kind"] != "Service"]
    assert all(p["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"} for ps in selectors for p in ps)


def _pods(doc: dict) -> list[dict]:
    if doc["kind"] == "Deployment":
        return [doc["spec"]["template"]]
    if doc["kind"] == "LeaderWorkerSet":
        t = doc["spec"]["leaderWorkerTemplate"]
        return [t["leaderTemplate"], t["workerTemplate"]]
    return []


def _containers(doc: dict) -> list[dict]:
    return [c for p in _pods(doc) for c in p["spec"]["containers"]]


def test_the_manifest_checks_catch_a_broken_manifest(plans: dict[str, Path], tmp_path: Path) -> None:
    from tests.engines.k8s_check import check_manifests

    files = _export(plans, BY_NAME["kubernetes-vllm-405b"], tmp_path / "out")
    docs = list(yaml.safe_load_all(files["manifests.yaml"]))
    docs[0]["spec"]["leaderWorkerTemplate"]["size"] = "two"
    docs[0]["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "Bogus"
    problems = check_manifests(docs)
    assert any("size" in p for p in problems) and any("Bogus" in p for p in problems)


# ----------------------------------------------------------------------------- exo's API, played back

def _exo_instance(node_ids: list[str], layers: list[tuple[int, int]], n_layers: int) -> dict:
    """An instance as exo's API serialises it (camelCase aliases, tagged unions: src/exo/shared/types/worker/)."""
    runners = {f"runner-{i}": {"PipelineShardMetadata": {"modelCard": {"modelId": "m"}, "deviceRank": i,
                                                         "worldSize": len(node_ids), "startLayer": a, "endLayer": b,
                                                         "nLayers": n_layers}}
               for i, (a, b) in enumerate(layers)}
    return {"MlxRingInstance": {"instanceId": "i-1", "shardAssignments": {
        "modelId": "m", "runnerToShard": runners, "nodeToRunner": {n: f"runner-{i}" for i, n in enumerate(node_ids)}},
        "hostsByNode": {}, "ephemeralPort": 50000}}


def _serve_exo(order: list[str], n_layers: int):
    import http.server
    import json
    import threading

    posted: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/node_id":
                self._send("node-a")  # every "machine" is this one server; the plan's order decides below
            elif self.path.startswith("/instance/previews"):
                half = n_layers // 2
                self._send({"previews": [
                    {"model_id": "m", "sharding": "Tensor", "instance_meta": "MlxRing", "instance": None, "error": "no"},
                    {"model_id": "m", "sharding": "Pipeline", "instance_meta": "MlxRing",
                     "instance": _exo_instance(order, [(0, half), (half, n_layers)], n_layers)}]})
            elif self.path == "/instance/i-1" and posted:
                self._send(posted[-1]["instance"])
            else:
                self.send_error(404)

        def do_POST(self):
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self._send({"ok": True})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, posted


def test_the_exo_script_creates_the_planned_instance_through_exos_api(plans: dict[str, Path], tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "out"
    _export(plans, BY_NAME["exo-405b"], out)
    spec_path = out / "replica-0" / "instance.json"
    spec = json.loads(spec_path.read_text())
    # Two machines on one test server: give them distinct node ids through their addresses.
    server, posted = _serve_exo(["node-a", "node-b"], spec["n_layers"])
    port = server.server_address[1]
    spec["nodes"][0]["address"], spec["nodes"][1]["address"] = "127.0.0.1", "localhost"
    spec["api_port"] = port
    spec["nodes"][0]["start_layer"], spec["nodes"][0]["end_layer"] = 0, 70  # the plan's ranges, not exo's 63/63
    spec["nodes"][1]["start_layer"], spec["nodes"][1]["end_layer"] = 70, 126
    spec_path.write_text(json.dumps(spec))
    script = out / "create_instance.py"
    patched = tmp_path / "create_instance.py"
    # node ids by address: the test server answers node-a to 127.0.0.1 and node-b to localhost
    patched.write_text(script.read_text().replace(
        'node_id = json.loads(call(f"http://{node[\'address\']}:{port}/node_id"))',
        'node_id = {"127.0.0.1": "node-a", "localhost": "node-b"}[node["address"]]'))
    try:
        run = subprocess.run([sys.executable, str(patched), str(spec_path), "--api", f"http://127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        (instance,) = [p["instance"] for p in posted]
        shards = instance["MlxRingInstance"]["shardAssignments"]["runnerToShard"]
        got = {r: (s["PipelineShardMetadata"]["startLayer"], s["PipelineShardMetadata"]["endLayer"]) for r, s in shards.items()}
        assert got == {"runner-0": (0, 70), "runner-1": (70, 126)}
        # exo ranking the machines the other way round: the script stops and creates nothing
        posted.clear()
        spec["nodes"].reverse()
        spec_path.write_text(json.dumps(spec))
        run = subprocess.run([sys.executable, str(patched), str(spec_path), "--api", f"http://127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 and "exo ranks the machines" in run.stderr and not posted
    finally:
        server.shutdown()


@pytest.mark.parametrize("path", ["$(touch /tmp/planner-pwned)", "/models/it's here; rm -rf ~", "`id`"])
def test_a_hostile_model_path_is_quoted_never_run(path: str, plans: dict[str, Path], tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "out"
    code, output = _invoke("export", str(plans["vllm-70b-replicas"]), "--to", "vllm", "--out", str(out), "--model-path", path)
    assert code == 0, output
    script = out / "replica-0" / "dgx.sh"
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "vllm").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (stub / "vllm").chmod(0o755)
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PATH": f"{stub}:/usr/bin:/bin"})
    assert run.returncode == 0 and run.stdout.splitlines()[1] == path
    assert not Path("/tmp/planner-pwned").exists()


@pytest.mark.parametrize("path", ["", "a\nb", "${X}\"y"])
def test_an_unusable_model_path_is_bad_input(path: str, plans: dict[str, Path], tmp_path: Path) -> None:
    code, output = _invoke("export", str(plans["vllm-70b-replicas"]), "--to", "vllm", "--out", str(tmp_path / "o"),
                           "--model-path", path)
    assert code == 2 and output.startswith("error: ") and "--model-path" in output
    assert not (tmp_path / "o").exists()


def test_export_with_an_inventory_takes_its_addresses_and_names_missing_machines(plans: dict[str, Path], tmp_path: Path) -> None:
    inventory = yaml.safe_load((INVENTORIES / "h100-2node-ib.yaml").read_text())
    inventory["nodes"][0]["address"] = ["hgx-a.example", "hgx-b.example"]
    path = _write_inventory(tmp_path, yaml.safe_dump(inventory))
    out = tmp_path / "out"
    code, output = _invoke("export", str(plans["vllm-405b-two-nodes"]), "--to", "vllm", "--out", str(out), "--inventory", str(path))
    assert code == 0, output
    assert "--master-addr hgx-a.example" in (out / "replica-0" / "hgx-2.sh").read_text()
    code, output = _invoke("export", str(plans["vllm-405b-two-nodes"]), "--to", "vllm", "--out", str(tmp_path / "x"),
                           "--inventory", str(INVENTORIES / "dgx-h100.yaml"))
    assert code == 2 and "has no machine hgx-1, hgx-2 of the plan" in output and not (tmp_path / "x").exists()


def test_a_hand_edited_plan_naming_an_unlisted_machine_is_bad_input(plans: dict[str, Path], tmp_path: Path) -> None:
    data = yaml.safe_load(plans["vllm-70b-replicas"].read_text())
    data["inventory"]["machines"] = []
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(data))
    code, output = _invoke("export", str(edited), "--to", "vllm", "--out", str(tmp_path / "o"))
    assert code == 2 and "does not list" in output and output.count("\n") == 1


def test_every_target_on_every_plan_gives_a_bundle_or_a_one_line_refusal(plans: dict[str, Path], tmp_path: Path) -> None:
    from planner.export import EXPORTERS

    outcomes = {}
    for case in CASES:
        for target in EXPORTERS:
            out = tmp_path / f"{case.name}-{target}"
            result = CliRunner().invoke(main, ["export", str(plans[case.name]), "--to", target, "--out", str(out)],
                                        catch_exceptions=False)
            assert result.exit_code in (0, 2), (case.name, target, result.output)
            if result.exit_code == 2:
                assert result.output.startswith("error: ") and result.output.count("\n") == 1 and not out.exists()
            outcomes[case.name, target] = result.exit_code
    gpu_servers = sum(load_plan(plans[c.name]).request.engine.id in ("vllm", "sglang") for c in CASES)
    assert sum(code == 0 for code in outcomes.values()) == len(CASES) + gpu_servers  # its engine, and kubernetes
