"""Host-memory offload (llama.cpp): when a machine's GPUs cannot hold the model, the least offload
that fits keeps the routed experts of the first layers (--n-cpu-moe) or the first layers whole
(-ngl below all) in the machine's RAM; checked by the verifier, exported as llama.cpp flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.commands.args import DeployArgs
from planner.commands.deploy import run_deploy
from planner.commands.saved import export_plan
from planner.estimate.host import OS_RESERVE_BYTES
from planner.loaders.inventory import load_inventory

BOX = """name: box
nodes:
  - name: box
    host_memory_gb: {ram}
{figures}
    devices:
      - type: rtx-3090
        count: {gpus}
"""
DDR5 = "    host_memory_channels: 2\n    host_memory_mt_s: 5600\n    host_cpu_cores: 16"
DDR4 = "    host_memory_channels: 2\n    host_memory_mt_s: 3200\n    host_cpu_cores: 16"


def inventory(tmp_path: Path, *, ram: int = 128, figures: str = DDR5, gpus: int = 1, name: str = "box.yaml") -> str:
    path = tmp_path / name
    path.write_text(BOX.format(ram=ram, figures=figures, gpus=gpus))
    return str(path)


def plan(path: str, model: str = "qwen3-235b-a22b", **fields):
    base = dict(inventory=path, model=model, weights="q4_k_m", engine="llama.cpp", users=1, context=8192)
    base.update(fields)
    return run_deploy(DeployArgs(**base))


def test_host_bandwidth_is_channels_times_transfers_times_eight_bytes(tmp_path: Path) -> None:
    cluster = load_inventory(inventory(tmp_path))
    assert cluster.nodes[0].host_memory_bandwidth_gb_s == pytest.approx(2 * 5600 * 8 / 1000)
    assert cluster.nodes[0].host_cpu_cores == 16


@pytest.mark.parametrize("figures, field", [
    ("    host_memory_channels: 2", "host_memory_mt_s"),
    ("    host_memory_bandwidth_gb_s: 80\n    host_memory_channels: 2\n    host_memory_mt_s: 5600", "not both"),
])
def test_half_given_host_figures_are_refused_with_the_file_and_line(tmp_path: Path, figures: str, field: str) -> None:
    path = inventory(tmp_path, figures=figures)
    result = CliRunner().invoke(main, ["deploy", "--inventory", path, "--model", "llama-3.1-8b"])
    assert result.exit_code == 2
    assert "box.yaml" in result.output and field in result.output and "Traceback" not in result.output


def test_moe_keeps_the_fewest_layers_experts_in_host_memory(tmp_path: Path) -> None:
    result = plan(inventory(tmp_path))
    assert result.exit_code == 0 and result.plan.verification == []
    (replica,) = result.plan.replicas
    host = replica.host_offload
    assert host is not None and host.layers == (0, 0) and not host.holds_lm_head  # attention stays on the GPU
    experts = host.expert_layers[1]
    assert 0 < experts < 94  # some, not all, of Qwen3-235B's 94 layers
    assert replica.stages[0].layers == (0, 94) and replica.stages[0].holds_lm_head
    gpu = replica.stages[0].devices[0].memory
    assert gpu.total_bytes <= gpu.capacity_bytes
    assert host.total_bytes <= host.capacity_bytes == 128 * 10**9 - OS_RESERVE_BYTES
    # One layer fewer in host memory would not fit: the GPU has less room left than one layer's experts.
    per_layer = (host.weights_bytes - 0) / experts  # embedding included, so this overstates a layer's experts
    assert gpu.capacity_bytes - gpu.total_bytes < per_layer
    assert "host memory bandwidth" in result.plan.performance.bottleneck


def test_a_dense_model_runs_its_first_layers_and_the_output_layer_on_the_cpu(tmp_path: Path) -> None:
    result = plan(inventory(tmp_path), model="llama-3.1-70b")
    assert result.exit_code == 0 and result.plan.verification == []
    (replica,) = result.plan.replicas
    host = replica.host_offload
    cpu = host.layers[1]
    assert 0 < cpu < 80 and host.holds_lm_head and host.expert_layers == (0, 0)
    assert host.kv_cache_bytes > 0  # the CPU's layers keep their cache in RAM
    (stage,) = replica.stages
    assert stage.layers == (cpu, 80) and not stage.holds_lm_head and not stage.holds_embedding
    bundle = export_plan(result.plan, "llama.cpp")
    script = bundle.files["replica-0/box-server.sh"]
    assert f"--n-gpu-layers {80 - cpu} " in script and "--n-cpu-moe" not in script  # no output slot on the GPU


def test_two_gpus_need_less_offload_and_export_n_cpu_moe(tmp_path: Path) -> None:
    one = plan(inventory(tmp_path)).plan.replicas[0]
    two_result = plan(inventory(tmp_path, gpus=2, name="two.yaml"))
    assert two_result.plan.verification == []
    two = two_result.plan.replicas[0]
    assert two.host_offload.expert_layers[1] < one.host_offload.expert_layers[1]
    assert two.decode_tokens_per_s_per_user > one.decode_tokens_per_s_per_user
    script = export_plan(two_result.plan, "llama.cpp").files["replica-0/box-server.sh"]
    assert f"--n-cpu-moe {two.host_offload.expert_layers[1]} " in script and "--n-gpu-layers 95 " in script


def test_faster_host_memory_decodes_faster(tmp_path: Path) -> None:
    ddr5 = plan(inventory(tmp_path)).plan.replicas[0]
    ddr4 = plan(inventory(tmp_path, figures=DDR4, name="ddr4.yaml")).plan.replicas[0]
    assert ddr4.host_offload.expert_layers == ddr5.host_offload.expert_layers
    ratio = ddr5.decode_tokens_per_s_per_user / ddr4.decode_tokens_per_s_per_user
    assert 1.3 < ratio < 5600 / 3200 + 0.01  # host-bound, but the GPU's share does not speed up


def test_without_host_figures_or_room_there_is_no_plan_and_the_reason(tmp_path: Path) -> None:
    missing = plan(inventory(tmp_path, figures="    host_cpu_cores: 16", name="missing.yaml"))
    assert missing.exit_code == 1
    assert "host_memory_bandwidth_gb_s" in "\n".join(missing.plan.explanation)
    small = plan(inventory(tmp_path, ram=64, name="small.yaml"))
    assert small.exit_code == 1


def test_plan_check_recomputes_the_host_share(tmp_path: Path) -> None:
    path = inventory(tmp_path)
    good = plan(path).plan
    replica = good.replicas[0]
    host = replica.host_offload
    fewer = host.model_copy(update={"total_bytes": host.total_bytes // 2, "expert_layers": (0, host.expert_layers[1] - 5)})
    tampered = good.model_copy(update={"replicas": [replica.model_copy(update={"host_offload": fewer})]})
    saved = tmp_path / "tampered.json"
    saved.write_text(tampered.model_dump_json())
    result = CliRunner().invoke(main, ["check", str(saved), "--inventory", path])
    assert result.exit_code == 1, result.output
    assert "host offload: the plan says" in result.output
    assert "box/gpu0 needs" in result.output  # the GPU would now hold experts it has no room for


def test_a_pinned_offload_is_planned_as_given_or_refused_with_the_reason(tmp_path: Path) -> None:
    path = inventory(tmp_path)
    pinned = plan(path, model="qwen3-30b-a3b", n_cpu_moe=48)  # llama.cpp --cpu-moe: every layer's experts
    assert pinned.exit_code == 0 and pinned.plan.verification == []
    assert pinned.plan.replicas[0].host_offload.expert_layers == (0, 48)
    assert pinned.plan.request.n_cpu_moe == 48
    too_much = plan(path, n_cpu_moe=94)  # all of Qwen3-235B's experts: 137.6 GB, more than 128 GB less the system
    assert too_much.exit_code == 1
    assert any("host memory of box holds" in line for line in too_much.plan.explanation)
    runner = CliRunner()
    dense = runner.invoke(main, ["deploy", "--inventory", path, "--model", "llama-3.1-8b", "--engine", "llama.cpp", "--n-cpu-moe", "4"])
    assert dense.exit_code == 2 and "no routed experts" in dense.output
    vllm = plan(path, model="qwen3-30b-a3b", weights="fp8", engine="vllm", n_cpu_moe=48)
    assert vllm.exit_code == 1 and any("keeps every weight on its devices" in line for line in vllm.plan.explanation)


def test_a_mac_is_never_offloaded_to_its_own_memory(tmp_path: Path) -> None:
    path = tmp_path / "mac.yaml"
    path.write_text("name: mac\nnodes:\n  - name: mac\n    host_memory_gb: 64\n    host_memory_bandwidth_gb_s: 400\n"
                    "    host_cpu_cores: 12\n    devices:\n      - type: m2-max-38c-64gb\n")
    result = plan(str(path), model="llama-3.1-70b", weights="q8_0")
    assert result.exit_code == 1 and not result.plan.replicas
    assert not any("host offload" in line for line in result.plan.explanation)


def test_a_tied_output_layer_on_the_cpu_is_counted_once(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nnodes:\n  - name: tiny\n    host_memory_gb: 32\n    host_memory_bandwidth_gb_s: 50\n"
                    "    host_cpu_cores: 8\n    devices:\n      - type: custom\n        name: small-gpu\n        memory_gib: 4\n"
                    "        bandwidth_gb_s: 300\n        fp16_tflops: 20\n")
    result = plan(str(path), model="llama-3.2-3b", weights="bf16", context=4096)  # tied embeddings
    assert result.exit_code == 0 and result.plan.verification == []  # the verifier sums tensor by tensor
    host = result.plan.replicas[0].host_offload
    assert host.layers[1] > 0 and host.holds_lm_head
    embedding = 128256 * 3072 * 2  # token_embd in bf16, which is also the output layer
    layer = 2 * (2 * 3072 * 3072 + 2 * 3072 * 1024 + 3 * 3072 * 8192 + 2 * 3072)  # attention, MLP, two norms
    assert host.weights_bytes == embedding + host.layers[1] * layer + 2 * 3072  # and the final norm
