"""The engines' own parsers and validators fed the exported launches (tests/engines/*_check.py,
run under the interpreters .ci/engines-*.sh build). In CI (PLANNER_ENGINE_CHECKS=1, set by
.ci/run) a missing interpreter fails; elsewhere these tests skip when it is absent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.export.bundle import Bundle, substitute
from planner.export.context import ExportContext
from planner.loaders.catalog import load_model
from planner.loaders.exports import load_export_assets
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.plan import load_plan
from tests.export_cases import CASES

ROOT = Path(__file__).resolve().parent.parent
INVENTORIES = ROOT / "inventories"
CHECKS = Path(__file__).resolve().parent / "engines"
IN_CI = os.environ.get("PLANNER_ENGINE_CHECKS") == "1"
INTERPRETERS = {  # checker -> (environment variable, default venv built by .ci/run)
    "vllm": ("PLANNER_VLLM_PYTHON", ".venv-engines/vllm"), "sglang": ("PLANNER_SGLANG_PYTHON", ".venv-engines/sglang"),
    "deepspeed": ("PLANNER_TRAIN_PYTHON", ".venv-engines-train"), "megatron": ("PLANNER_TRAIN_PYTHON", ".venv-engines-train"),
}
FILL = {"DATA_PATH": "/data/corpus_text_document", "TRAIN_ITERS": "1000", "LR": "0.0001", "SAVE_DIR": "/ckpt", "SAVE_INTERVAL": "500",
        "TRAIN_SCRIPT": "train.py", "HGX_1_ADDR": "10.0.0.1", "HGX_2_ADDR": "10.0.0.2", "DGX_ADDR": "10.0.0.3"}


def engine_python(checker: str) -> str:
    variable, venv = INTERPRETERS[checker]
    path = os.environ.get(variable) or str(ROOT / venv / "bin" / "python")
    if not Path(path).exists():
        message = f"{checker}'s own validator is not installed ({variable} or {venv}/; .ci/run builds it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_check(checker: str, request: dict) -> dict:
    run = subprocess.run([engine_python(checker), str(CHECKS / f"{checker}_check.py")], input=json.dumps(request),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plans")
    out = {}
    for case in CASES:
        path = folder / f"{case.name}.yaml"
        result = CliRunner().invoke(main, ["deploy", "--inventory", str(INVENTORIES / case.inventory), *case.deploy,
                                           "-o", str(path), "--format", "json"])
        assert result.exit_code == 0, result.output[-1000:]
        out[case.name] = path
    return out


def _bundle(plan, target: str, **extra) -> Bundle:
    from planner.export import build_bundle

    context = ExportContext(model=load_model(plan.request.model.name), hardware=dict(load_hardware_catalog()),
                            assets=load_export_assets(), **extra)
    return build_bundle(target, plan, context)


def _filled(tokens) -> list[str]:
    return [substitute(t, FILL) for t in tokens]


# ----------------------------------------------------------------------------- DeepSpeed

@pytest.mark.parametrize("name", ["deepspeed-8b", "deepspeed-70b-offload"])
def test_deepspeed_accepts_the_exported_config(name: str, plans: dict[str, Path]) -> None:
    plan = load_plan(plans[name])
    config = json.loads(_bundle(plan, "deepspeed").files["ds_config.json"])
    result = run_check("deepspeed", {"config": config, "data_parallel_size": plan.layout.data_parallel_size})
    assert result["ok"], result
    s = result["summary"]
    assert (s["train_batch_size"], s["train_micro_batch_size_per_gpu"], s["gradient_accumulation_steps"], s["zero_stage"]) == (
        plan.layout.global_batch_size, plan.layout.micro_batch_size, plan.layout.gradient_accumulation_steps, plan.layout.zero_stage)
    assert (s["offload_optimizer_device"] == "cpu") == (plan.layout.offload != "none") and s["bf16"]


def test_deepspeed_rejects_a_batch_that_does_not_multiply_out(plans: dict[str, Path]) -> None:
    plan = load_plan(plans["deepspeed-8b"])
    config = json.loads(_bundle(plan, "deepspeed").files["ds_config.json"])
    config["train_batch_size"] += plan.layout.data_parallel_size
    result = run_check("deepspeed", {"config": config, "data_parallel_size": plan.layout.data_parallel_size})
    assert not result["ok"] and "train_batch_size is not equal" in result["error"]


# ----------------------------------------------------------------------------- Megatron-LM

def _megatron_request(bundle: Bundle) -> dict:
    launch = bundle.launches[0]
    argv = _filled(launch.argv)
    script = argv.index("pretrain_gpt.py")
    world = int(argv[argv.index("--nproc_per_node") + 1]) * int(argv[argv.index("--nnodes") + 1])
    return {"argv": argv[script + 1:], "env": dict(launch.env), "world_size": world}


def _stage_layers(summary: dict) -> list[int]:
    return [s["num_layers"] for s in sorted(summary["stages"], key=lambda s: s["pp_rank"])]


def test_megatron_validates_the_exported_command(plans: dict[str, Path]) -> None:
    plan = load_plan(plans["megatron-70b"])
    result = run_check("megatron", _megatron_request(_bundle(plan, "megatron")))
    assert result["ok"], result
    s, lay = result["summary"], plan.layout
    assert (s["tp"], s["pp"], s["dp"], s["global_batch_size"]) == (lay.tensor_parallel_size,
                                                                   lay.pipeline_parallel_size, lay.data_parallel_size,
                                                                   lay.global_batch_size)
    assert _stage_layers(s) == [st.layers[1] - st.layers[0] for st in plan.ranks[0].stages]
    assert s["num_microbatches"] == lay.global_batch_size // (lay.micro_batch_size * lay.data_parallel_size)


def test_megatron_builds_the_plans_uneven_stages_from_the_layout(plans: dict[str, Path]) -> None:
    plan = load_plan(plans["megatron-70b"])
    rank = plan.ranks[0]
    stages = [rank.stages[0].model_copy(update={"layers": (0, 42)}), rank.stages[1].model_copy(update={"layers": (42, 80)})]
    uneven = plan.model_copy(update={"ranks": [rank.model_copy(update={"stages": stages})]})
    request = _megatron_request(_bundle(uneven, "megatron"))
    assert "Et*42|t*38L" in request["argv"]
    result = run_check("megatron", request)
    assert result["ok"], result
    assert _stage_layers(result["summary"]) == [42, 38]
    broken = dict(request, argv=[("Et*41|t*38L" if a == "Et*42|t*38L" else a) for a in request["argv"]])
    result = run_check("megatron", broken)
    assert not result["ok"] and "must match num_layers" in result["error"]


# ----------------------------------------------------------------------------- vLLM and SGLang

def _config_json(plan) -> dict:
    from planner.loaders.catalog import find_catalog_entry

    return dict(find_catalog_entry(plan.request.model.name).config)


def _serving_requests(plan, target: str) -> list[tuple[object, dict]]:
    bundle = _bundle(plan, target)
    config = _config_json(plan)
    out = []
    for launch in bundle.launches:
        argv = _filled(launch.argv)
        argv = argv[1:] if target == "vllm" else argv[argv.index("sglang.launch_server") + 1:]
        env = {k: v for k, v in launch.env if not k.startswith("CUDA_")}
        out.append((launch, {"argv": argv, "env": env, "config_json": config}))
    return out


SERVING = [c.name for c in CASES if c.target in ("vllm", "sglang")]


@pytest.mark.parametrize("name", SERVING)
def test_the_engine_accepts_every_exported_launch(name: str, plans: dict[str, Path]) -> None:
    plan = load_plan(plans[name])
    target = plan.request.engine.id
    for launch, request in _serving_requests(plan, target):
        result = run_check(target, request)
        assert result["ok"], (launch.machine, result)
        s = result["summary"]
        replica = plan.replicas[int(launch.role.split()[1].rstrip(","))]
        stages = [list(st.layers) for st in replica.stages]
        assert s["pp_ranges"] == stages, (s["pp_ranges"], stages)
        assert s["tensor_parallel_size"] == replica.stages[0].tensor_parallel_size
        assert s["pipeline_parallel_size"] == len(replica.stages)


def test_vllm_refuses_a_launch_whose_nodes_do_not_divide_its_ranks(plans: dict[str, Path]) -> None:
    plan = load_plan(plans["vllm-405b-two-nodes"])
    _, request = _serving_requests(plan, "vllm")[0]
    argv = list(request["argv"])
    argv[argv.index("--nnodes") + 1] = "3"
    result = run_check("vllm", dict(request, argv=argv))
    assert not result["ok"] and "nnodes" in result["error"]


def test_sglang_refuses_a_launch_whose_nodes_do_not_divide_its_ranks(plans: dict[str, Path]) -> None:
    plan = load_plan(plans["sglang-405b-two-nodes"])
    _, request = _serving_requests(plan, "sglang")[0]
    argv = list(request["argv"])
    argv[argv.index("--nnodes") + 1] = "3"
    result = run_check("sglang", dict(request, argv=argv))
    assert not result["ok"]
