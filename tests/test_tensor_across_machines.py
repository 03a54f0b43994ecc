"""Tensor parallelism over whole machines (exo's Tensor sharding and mlx-lm's default mode across
Macs over RDMA on Thunderbolt 5): chosen only where the engine runs it and every link between the
machines is fit for it, checked by the verifier, exported with the RDMA backends."""

from __future__ import annotations

import json
from pathlib import Path

from planner.commands.args import DeployArgs
from planner.commands.deploy import run_deploy
from planner.loaders.engines import load_engine_catalog
from planner.loaders.inventory import load_inventory
from planner.verify.engine import check_serve_engine

ROOT = Path(__file__).resolve().parent.parent
MACS = str(ROOT / "inventories" / "mac-studio-cluster.yaml")  # 4x M3 Ultra 512 GB, a Thunderbolt 5 ring


def plan(**fields):
    base = dict(model="llama-3.1-70b", weights="mlx-8bit", users=1, context=4096)
    base.update(fields)
    return run_deploy(DeployArgs(**base))


def test_exo_shards_tensors_over_the_thunderbolt_ring() -> None:
    result = plan(inventory=MACS, engine="exo")
    assert result.exit_code == 0 and result.plan.verification == []
    (replica,) = result.plan.replicas
    (stage,) = replica.stages
    nodes = [d.node for d in stage.devices]
    assert stage.tensor_parallel_size == 4 and len(set(nodes)) == 4  # one group over the four Macs, whole
    # Faster per user than the same Macs as a pipeline (layers split, one Mac at a time).
    piped = plan(inventory=MACS, engine="exo", pipeline_parallel_size=4)
    assert piped.exit_code == 0
    assert replica.decode_tokens_per_s_per_user > 1.5 * piped.plan.replicas[0].decode_tokens_per_s_per_user


def test_no_tensor_parallelism_across_machines_over_ethernet_or_for_gpu_servers() -> None:
    over_ethernet = plan(nodes="4x(m3-ultra-80c-512gb)", network="ethernet-10g", engine="exo")
    assert over_ethernet.exit_code == 0
    assert all(s.tensor_parallel_size == 1 for r in over_ethernet.plan.replicas for s in r.stages)
    servers = plan(nodes="2x(8xh100-sxm)", model="llama-3.1-405b", weights="fp8", engine="vllm")
    assert servers.exit_code == 0
    for replica in servers.plan.replicas:
        for stage in replica.stages:
            assert len({d.node for d in stage.devices}) == 1  # vLLM's tensor groups stay in a machine


def test_the_verifier_refuses_groups_over_machines_an_engine_cannot_run() -> None:
    result = plan(inventory=MACS, engine="exo")
    cluster = load_inventory(MACS)
    engines = load_engine_catalog()
    assert check_serve_engine(result.plan, engines["exo"], cluster, ["mlx"], "float", 80) == []
    problems = check_serve_engine(result.plan, engines["llama.cpp"], cluster, ["mlx"], "float", 80)
    assert any("span machines" in p for p in problems)
    # Half a machine's devices in the group is refused too (a group over machines takes them whole).
    ethernet = load_inventory(MACS).model_copy(update={"links": tuple(
        x.model_copy(update={"link": x.link.model_copy(update={"id": "ethernet-10g", "tensor_parallel_ok": False})})
        for x in cluster.links)})
    assert any("not fit for it" in p for p in check_serve_engine(result.plan, engines["exo"], ethernet, ["mlx"], "float", 80))


def test_exports_use_the_rdma_backends(tmp_path: Path) -> None:
    from planner.commands.saved import export_plan

    result = plan(inventory=MACS, engine="exo")
    exo = export_plan(result.plan, "exo")
    instance = json.loads(exo.files["replica-0/instance.json"])
    assert instance["sharding"] == "Tensor" and instance["instance_meta"] == "MlxJaccl"
    assert [n["start_layer"] for n in instance["nodes"]] == [0, 0, 0, 0]
    mlx = export_plan(plan(inventory=MACS, engine="mlx-lm").plan, "mlx-lm")
    launch = mlx.files["replica-0/launch.sh"]
    assert "--backend jaccl" in launch and "mlx.distributed_config" in launch and "--pipeline" not in launch
