"""Quick inventories (--gpus, --nodes) and `plan whatif`: changes to the machines and precision
lists, each scenario a verified plan."""

from __future__ import annotations

import json

import pytest

from planner.cli.main import main
from planner.commands.whatif import apply_changes
from planner.errors import InputError
from planner.loaders.inventory import load_inventory
from planner.loaders.shorthand import build_shorthand_cluster
from planner.topology import build_topology
from tests.conftest import ROOT

HOMELAB = str(ROOT / "inventories" / "homelab.yaml")


def _json(runner, *args: str) -> tuple[int, dict]:
    result = runner.invoke(main, [*args, "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_gpus_shorthand_is_one_machine_with_default_links() -> None:
    cluster = build_shorthand_cluster(gpus="2xrtx-3090,rtx-4090")
    assert [d.spec.id for d in cluster.devices] == ["rtx-3090", "rtx-3090", "rtx-4090"]
    assert [n.name for n in cluster.nodes] == ["n1"] and cluster.nodes[0].interconnect.id == "pcie-4"
    assert "pcie-4 inside" in cluster.name


def test_nodes_shorthand_picks_nvswitch_and_infiniband_for_sxm_servers() -> None:
    cluster = build_shorthand_cluster(nodes="2x(8xh100-sxm)")
    assert [n.name for n in cluster.nodes] == ["n1", "n2"]
    assert {n.interconnect.id for n in cluster.nodes} == {"nvswitch"}
    assert {link.link.id for link in cluster.links} == {"infiniband-ndr"}
    macs = build_shorthand_cluster(nodes="3x(m2-ultra-76c-192gb)", network="thunderbolt-5")
    assert {n.interconnect.id for n in macs.nodes} == {"unified"} and {link.link.id for link in macs.links} == {"thunderbolt-5"}
    mixed = build_shorthand_cluster(nodes="(8xh100-sxm)+2x(4xl40s)")
    assert [len(n.devices) for n in mixed.nodes] == [8, 4, 4] and {link.link.id for link in mixed.links} == {"ethernet-10g"}


@pytest.mark.parametrize(("kwargs", "field", "text"), [
    ({"gpus": "2xrtx-3099"}, "--gpus", "did you mean 'rtx-3090'"),
    ({"nodes": "2x8xh100-sxm"}, "--nodes", "COUNTx(DEVICES)"),
    ({"gpus": "0xrtx-3090"}, "--gpus", "a count from 1"),
    ({"gpus": "2xm2-ultra-76c-192gb"}, "--gpus", "one device per node"),
    ({"gpus": "rtx-3090", "interconnect": "warp"}, "--interconnect", "unknown intra-node interconnect"),
    ({"nodes": "2x(rtx-3090)", "network": "pigeon"}, "--network", "unknown network link"),
])
def test_shorthand_errors_name_the_option(kwargs: dict, field: str, text: str) -> None:
    with pytest.raises(InputError) as err:
        build_shorthand_cluster(**kwargs)
    assert err.value.field == field and text in str(err.value)


def test_deploy_on_gpus_matches_the_same_inventory_file(runner, tmp_path) -> None:
    path = tmp_path / "box.yaml"
    path.write_text("name: box\nnodes:\n  - name: n1\n    interconnect: pcie-4\n    devices:\n"
                    "      - type: rtx-3090\n        count: 2\n")
    common = ["--model", "qwen3-14b", "--weights", "q4_k_m", "--users", "3"]
    _, short = _json(runner, "deploy", "--gpus", "2xrtx-3090", *common)
    _, file = _json(runner, "deploy", "--inventory", str(path), *common)
    assert short["replicas"] == file["replicas"] and short["performance"] == file["performance"]
    assert short["verification"] == []


def test_deploy_needs_exactly_one_description_of_the_machines(runner) -> None:
    none = runner.invoke(main, ["deploy", "--model", "llama-3.1-8b"])
    both = runner.invoke(main, ["deploy", "--model", "llama-3.1-8b", "--inventory", HOMELAB, "--gpus", "rtx-3090"])
    links = runner.invoke(main, ["deploy", "--model", "llama-3.1-8b", "--inventory", HOMELAB, "--network", "ethernet-10g"])
    for result in (none, both, links):
        assert result.exit_code == 2 and result.output.count("\n") == 1 and "Traceback" not in result.output


def test_changes_add_remove_replace() -> None:
    cluster = load_inventory(ROOT / "inventories" / "h100-2node-ib.yaml")
    changed = apply_changes(cluster, add=("2xl40s",), remove=("hgx-2",), replace=("hgx-1=4xh100-sxm",))
    assert [n.name for n in changed.nodes] == ["hgx-1", "added-1"]
    assert [d.spec.id for d in changed.nodes[0].devices] == ["h100-sxm"] * 4
    assert changed.nodes[0].interconnect.id == "nvswitch"  # the machine keeps its own link
    assert [d.id for d in changed.nodes[1].devices] == ["added-1/gpu0", "added-1/gpu1"]
    build_topology(changed).route("hgx-1/gpu0", "added-1/gpu0")  # the new machine is on the network
    cabled = apply_changes(build_shorthand_cluster(nodes="(8xh100-sxm)"), add=("8xh100-sxm",), network="infiniband-ndr")
    assert build_topology(cabled).route("n1/gpu0", "added-1/gpu0").bottleneck == "infiniband-ndr"
    grown = apply_changes(load_inventory(HOMELAB), add=("rtx-3090@gpu-box",))
    assert [d.id for d in grown.devices][-1] == "gpu-box/gpu3" and len(grown.nodes) == 1


@pytest.mark.parametrize(("args", "field", "text"), [
    (["--remove", "nope"], "--remove", "no machine named 'nope'"),
    (["--add", "rtx-3090@gpu-bx"], "--add", "did you mean 'gpu-box'"),
    (["--replace", "gpu-box"], "--replace", "NODE=DEVICES"),
    (["--remove", "gpu-box"], "--remove", "no machine would be left"),
    ([], "--add", "nothing to compare"),
])
def test_whatif_bad_changes_exit_2_on_one_line(runner, args: list[str], field: str, text: str) -> None:
    result = runner.invoke(main, ["whatif", "--inventory", HOMELAB, "--model", "llama-3.1-8b", *args])
    assert result.exit_code == 2 and text in result.output and field in result.output
    assert result.output.count("\n") == 1


def test_whatif_a_second_card_is_priced_and_planned(runner) -> None:
    code, report = _json(runner, "whatif", "--inventory", HOMELAB, "--model", "llama-3.1-70b", "--weights", "q4_k_m",
                         "--users", "4", "--add", "rtx-3090@gpu-box")
    assert code == 0
    before, after = report["scenarios"]
    assert before["devices"] == 3 and after["devices"] == 4 and before["fits"]
    assert after["cost_change_usd"] == 1499.0  # the catalog's RTX 3090 launch price
    assert after["max_users"] > before["max_users"]  # a fourth card holds more cache
    assert report["prices"]["from_catalog_dated"] and report["prices"]["oldest_months"] > 12


def test_whatif_precision_list_shows_what_each_format_needs(runner) -> None:
    code, report = _json(runner, "whatif", "--gpus", "rtx-3090", "--model", "qwen3-32b", "--weights", "q4_k_m,q8_0",
                         "--users", "2")
    assert code == 0
    q4, q8 = report["scenarios"]
    assert q4["weights"] == "q4_k_m" and q4["fits"] and q4["tokens_per_s_per_user"] > 0
    assert q8["weights"] == "q8_0" and not q8["fits"] and "needs" in q8["reason"]


def test_whatif_is_deterministic(runner) -> None:
    args = ["whatif", "--gpus", "2xrtx-3090", "--model", "qwen3-14b", "--weights", "q4_k_m", "--add", "rtx-4090@n1"]
    assert runner.invoke(main, args).stdout == runner.invoke(main, args).stdout
