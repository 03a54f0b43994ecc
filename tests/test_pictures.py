"""Pictures (planner.report.pictures): the memory bars add up, and each figure is a real PNG or SVG,
the same bytes every time, showing what it is about. Plans come from the real planner on bundled
inventories."""

from __future__ import annotations

import io
import sys
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from planner.commands.args import DeployArgs
from planner.commands.deploy import run_deploy
from planner.commands.inventory import run_inventory_show
from planner.errors import InputError
from planner.report.pictures import (
    INSTALL_HINT,
    build_memory_figure,
    build_pareto_figure,
    build_sweep_figure,
    build_topology_figure,
    memory_segments,
    pictures_available,
    plan_holders,
)
from tests.conftest import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"


def deploy_dict(inventory: str, **fields: Any) -> dict[str, Any]:
    result = run_deploy(DeployArgs(inventory=str(ROOT / "inventories" / inventory), model="llama-3.1-8b", **fields))
    assert result.exit_code == 0
    return result.data


def inventory_dict(inventory: str) -> dict[str, Any]:
    return run_inventory_show(str(ROOT / "inventories" / inventory))[0]


@pytest.fixture(scope="module")
def serve_plan() -> dict[str, Any]:
    return deploy_dict("homelab.yaml", users=4, context=8192)


@pytest.fixture(scope="module")
def train_plan() -> dict[str, Any]:
    return deploy_dict("homelab.yaml", mode="train", lora_rank=16)


@pytest.fixture(scope="module")
def two_node_plan() -> dict[str, Any]:
    """One replica in two pipeline stages, one per machine, across the InfiniBand link."""
    return deploy_dict("h100-2node-ib.yaml", users=4, tensor_parallel_size=8, pipeline_parallel_size=2)


POINTS = [
    {"label": "2x rtx-3090", "cost_usd": 3000.0, "tokens_per_s": 250.0, "per_user_tokens_per_s": 60.0, "on_front": True},
    {"label": "4x l40s", "cost_usd": 32000.0, "tokens_per_s": 1800.0, "per_user_tokens_per_s": 28.0, "on_front": True},
    {"label": "8x h100-sxm", "cost_usd": 300000.0, "tokens_per_s": 9000.0, "per_user_tokens_per_s": 140.0, "on_front": True},
    {"label": "mac-studio", "cost_usd": 9000.0, "tokens_per_s": 120.0, "per_user_tokens_per_s": 12.0, "on_front": False},
]
SWEEP = {"model": "llama-3.1-8b", "inventory": "homelab", "rows": [
    {"users": u, "context": c, "fits": u * c <= 2**20, "per_user_tokens_per_s": 70.0 - u if u * c <= 2**20 else None,
     "tokens_per_s": u * (70.0 - u) if u * c <= 2**20 else None, "max_users": 2**20 // c}
    for u in (1, 8, 64) for c in (4096, 32768)]}


def _devices(plan: dict[str, Any]) -> list[dict[str, Any]]:
    groups = plan["ranks"] if plan["mode"] == "train" else plan["replicas"]
    return [d for g in groups for s in g["stages"] for d in s["devices"]]


# --- memory_segments: pure, no matplotlib -------------------------------------------------------

@pytest.mark.parametrize("which", ["serve_plan", "train_plan", "two_node_plan"])
def test_each_bar_sums_to_its_device_capacity(which: str, request) -> None:
    plan = request.getfixturevalue(which)
    bars = memory_segments(plan)
    devices = _devices(plan)
    assert [b["device"] for b in bars] == [d["id"] for d in devices]
    for bar, device in zip(bars, devices):
        memory = device["memory"]
        sizes = dict(bar["segments"])
        assert sum(sizes.values()) == memory["capacity_bytes"] == bar["capacity_bytes"]
        assert sum(v for k, v in sizes.items() if k != "free") == memory["total_bytes"]
        assert sizes["weights"] == memory["weights_bytes"] and sizes["overhead"] == memory["overhead_bytes"]
        assert sizes["free"] > 0


def test_serving_bars_hold_kv_cache_and_training_bars_optimizer_states(serve_plan, train_plan) -> None:
    serving = [part for part, _ in memory_segments(serve_plan)[0]["segments"]]
    training = [part for part, _ in memory_segments(train_plan)[0]["segments"]]
    assert serving == ["weights", "KV cache", "activations", "overhead", "free"]
    assert training == ["weights", "activations", "gradients", "optimizer states", "overhead", "free"]
    assert memory_segments(train_plan)[0]["holder"] == "rank 0 stage 0"


def test_an_overfull_device_has_no_free_part_and_unnamed_bytes_show_as_other(serve_plan) -> None:
    plan = {**serve_plan, "replicas": [dict(serve_plan["replicas"][0])]}
    stage = dict(plan["replicas"][0]["stages"][0])
    plan["replicas"][0]["stages"] = [stage]
    memory = {"weights_bytes": 60, "kv_cache_bytes": 30, "activations_bytes": 5, "overhead_bytes": 5, "total_bytes": 120,
              "capacity_bytes": 100}
    stage["devices"] = [{**stage["devices"][0], "memory": memory}]
    (bar,) = memory_segments(plan)
    assert dict(bar["segments"]) == {"weights": 60, "KV cache": 30, "activations": 5, "overhead": 5, "other": 20, "free": 0}


def test_holders_name_replica_and_stage(two_node_plan) -> None:
    holders = plan_holders(two_node_plan)
    assert holders["hgx-1/gpu0"] == "replica 0 stage 0" and holders["hgx-2/gpu7"] == "replica 0 stage 1"


def test_a_plan_without_replicas_has_no_bars(serve_plan, train_plan) -> None:
    # What an infeasible plan records (tests/test_report_html.py renders a real one).
    assert memory_segments({**serve_plan, "replicas": []}) == []
    assert memory_segments({**train_plan, "layout": None, "ranks": []}) == []


def test_without_matplotlib_a_picture_is_an_input_error_naming_the_extra(serve_plan, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(InputError, match=r"planner\[pictures\]"):
        build_memory_figure(serve_plan, "svg")
    assert "pip install" in INSTALL_HINT


# --- the figures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def figures(serve_plan, train_plan, two_node_plan) -> dict[str, Any]:
    """Each figure's builder, with its input bound."""
    assert pictures_available(), "matplotlib is in the test extra: pip install -e '.[test]'"
    inventory = inventory_dict("h100-2node-ib.yaml")
    return {
        "memory": lambda fmt: build_memory_figure(serve_plan, fmt),
        "memory-train": lambda fmt: build_memory_figure(train_plan, fmt),
        "topology": lambda fmt: build_topology_figure(two_node_plan, inventory, fmt),
        "topology-no-inventory": lambda fmt: build_topology_figure(serve_plan, None, fmt),
        "pareto": lambda fmt: build_pareto_figure(POINTS, fmt),
        "sweep": lambda fmt: build_sweep_figure(SWEEP, fmt),
    }


NAMES = ["memory", "memory-train", "topology", "topology-no-inventory", "pareto", "sweep"]


@pytest.mark.parametrize("name", NAMES)
def test_png_is_a_real_image(figures, name: str) -> None:
    import matplotlib.image

    data = figures[name]("png")
    assert data.startswith(PNG_SIGNATURE)
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    height, width = pixels.shape[:2]
    assert width >= 300 and height >= 150
    assert pixels.std() > 0.05  # not a blank canvas


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_same_input_same_bytes(figures, name: str, fmt: str) -> None:
    assert figures[name](fmt) == figures[name](fmt)


def _svg(data: bytes) -> ET.Element:
    root = ET.fromstring(data)
    assert root.tag == f"{SVG}svg"
    return root


def _texts(root: ET.Element) -> str:
    return "\n".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


def _gids(root: ET.Element, prefix: str) -> list[str]:
    return [e.get("id") for e in root.iter() if (e.get("id") or "").startswith(prefix)]


def test_memory_svg_has_a_shape_per_segment_and_every_device_label(figures, serve_plan) -> None:
    root = _svg(figures["memory"]("svg"))
    bars = memory_segments(serve_plan)
    expected = [f"bar{row}-{part.replace(' ', '-')}" for row, bar in enumerate(bars) for part, size in bar["segments"] if size > 0]
    assert _gids(root, "bar") == expected
    texts = _texts(root)
    for bar in bars:
        assert bar["device"] in texts
    assert "llama-3.1-8b on homelab" in texts and "GiB" in texts


def test_topology_svg_draws_every_device_machine_and_link(figures, two_node_plan) -> None:
    root = _svg(figures["topology"]("svg"))
    inventory = inventory_dict("h100-2node-ib.yaml")
    assert len(_gids(root, "device-")) == len(inventory["devices"]) == 16
    texts = _texts(root)
    assert "hgx-1" in texts and "hgx-2" in texts
    assert "infiniband-ndr x8, 400 GB/s" in texts  # the link between the machines, with its bandwidth
    assert "replica 0 stage 0" in texts and "replica 0 stage 1" in texts  # the legend


def test_topology_without_inventory_shows_the_unused_device(figures, serve_plan) -> None:
    root = _svg(figures["topology-no-inventory"]("svg"))
    assert len(_gids(root, "device-")) == 3
    assert "unused" in _texts(root) and serve_plan["unused_devices"] == ["gpu-box/gpu0"]


def test_pareto_labels_the_front_only(figures) -> None:
    texts = _texts(_svg(figures["pareto"]("svg")))
    for point in POINTS:
        assert (point["label"] in texts) == point["on_front"]
    assert "tokens/s per user" in texts


def test_sweep_writes_values_and_crosses_out_what_does_not_fit(figures) -> None:
    texts = _texts(_svg(figures["sweep"]("svg")))
    misfits = [r for r in SWEEP["rows"] if not r["fits"]]
    assert misfits and texts.count("\u2717") == len(misfits) + 1  # one per cell, one in the title
    for row in SWEEP["rows"]:
        if row["fits"]:
            assert f"{row['per_user_tokens_per_s']:,.1f}" in texts
    assert "up to 256 users" in texts  # 2**20 // 4096


def test_empty_inputs_still_give_a_picture(figures) -> None:
    assert build_pareto_figure([], "png").startswith(PNG_SIGNATURE)
    assert b"empty" in build_sweep_figure({"rows": [], "model": "m", "inventory": "i"}, "svg")


def test_a_sweep_over_several_weight_formats_is_one_heat_map_each(figures) -> None:
    rows = [{**r, "weights": w, "engine": "vllm"} for r in SWEEP["rows"] for w in ("bf16", "q4_k_m")]
    with pytest.raises(InputError, match="one weight format"):
        build_sweep_figure({**SWEEP, "rows": rows}, "svg")
    one = [r for r in rows if r["weights"] == "q4_k_m"]
    assert "(q4_k_m, vllm)" in _texts(_svg(build_sweep_figure({**SWEEP, "rows": one}, "svg")))


def test_an_unknown_format_is_refused(figures) -> None:
    with pytest.raises(InputError, match="png, svg"):
        build_pareto_figure(POINTS, "jpeg")
