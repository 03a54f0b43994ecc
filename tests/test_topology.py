"""The cluster graph: bottleneck bandwidth, latency, fast domains and pipeline hops."""

from __future__ import annotations

import pytest

from planner.loaders.inventory import load_inventory
from planner.loaders.links import load_link_catalog
from planner.topology import build_topology
from tests.conftest import ROOT

LINKS = load_link_catalog()


def topo(name: str):
    return build_topology(load_inventory(ROOT / "inventories" / f"{name}.yaml"))


def test_inside_one_pcie_box() -> None:
    t = topo("homelab")
    route = t.route("gpu-box/gpu0", "gpu-box/gpu1")
    assert route.bandwidth_gb_s == LINKS["pcie-4"].bandwidth_gb_s
    assert route.latency_us == pytest.approx(LINKS["pcie-4"].latency_us)
    assert t.hop_link("gpu-box/gpu1", "gpu-box/gpu2") == "pcie-4"


def test_nvswitch_uses_the_devices_nvlink_bandwidth() -> None:
    t = topo("dgx-h100")
    device = t.cluster.devices[0]
    assert t.route("dgx/gpu0", "dgx/gpu7").bandwidth_gb_s == device.spec.nvlink_bandwidth_gb_s / 2


def test_across_nodes_the_network_is_the_bottleneck() -> None:
    t = topo("mixed-gpu-mac")
    route = t.route("gpu-box/gpu0", "studio/gpu0")
    assert route.bottleneck == "ethernet-10g"
    assert route.bandwidth_gb_s == LINKS["ethernet-10g"].bandwidth_gb_s
    expected = LINKS["pcie-4"].latency_us / 2 + LINKS["ethernet-10g"].latency_us + LINKS["unified"].latency_us / 2
    assert route.latency_us == pytest.approx(expected)


def test_rails_multiply_network_bandwidth() -> None:
    t = topo("h100-2node-ib")
    route = t.route("hgx-1/gpu0", "hgx-2/gpu3")
    assert route.bandwidth_gb_s == pytest.approx(min(8 * LINKS["infiniband-ndr"].bandwidth_gb_s, 450))


def test_ring_routes_take_the_widest_path() -> None:
    t = topo("mac-studio-cluster")
    route = t.route("studio-1/gpu0", "studio-3/gpu0")
    assert route.bottleneck == "thunderbolt-5"
    assert route.hops.count("thunderbolt-5") == 2


def test_fast_domains() -> None:
    homelab = {(f.device_type, len(f.device_ids)) for f in topo("homelab").fast_domains()}
    assert homelab == {("rtx-4090", 1), ("rtx-3090", 2)}
    dgx = topo("dgx-h100").fast_domains()
    assert len(dgx) == 1 and len(dgx[0].device_ids) == 8 and dgx[0].link == "nvswitch"
    macs = topo("mac-studio-cluster").fast_domains()
    assert len(macs) == 4 and all(len(f.device_ids) == 1 for f in macs)
    big = topo("h100-256").fast_domains()
    assert len(big) == 32 and all(len(f.device_ids) == 8 for f in big)


def test_large_cluster_routes() -> None:
    t = topo("h100-256")
    route = t.route("node-1/gpu0", "node-32/gpu7")
    assert route.bottleneck in ("infiniband-ndr", "nvswitch")
    assert route.bandwidth_gb_s <= 8 * LINKS["infiniband-ndr"].bandwidth_gb_s
