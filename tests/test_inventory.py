"""Inventory files: every bundled file loads; bad input gets the file, line, field and a suggestion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cli import main
from planner.errors import InputError
from planner.loaders.inventory import build_cluster, load_inventory
from planner.loaders.yamlfile import parse_yaml_text
from planner.units import GB, GiB
from tests.conftest import ROOT

INVENTORIES = sorted((ROOT / "inventories").glob("*.yaml"))


def load_text(text: str, name: str = "test.yaml"):
    return build_cluster(parse_yaml_text(text, name))


def test_bundled_inventories_cover_the_required_setups() -> None:
    assert len(INVENTORIES) >= 8
    sizes = {p.stem: len(load_inventory(p).devices) for p in INVENTORIES}
    assert sizes["homelab"] == 3 and sizes["workstation"] == 4 and sizes["dgx-h100"] == 8
    assert sizes["h100-2node-ib"] == 16 and sizes["mac-studio-cluster"] == 4 and sizes["mixed-gpu-mac"] == 3
    assert sizes["cloud-l40s"] == 8 and sizes["h100-256"] == 256


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_cli_validates_and_shows_every_bundled_inventory(runner, path: Path) -> None:
    result = runner.invoke(main, ["inventory", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    shown = runner.invoke(main, ["inventory", "show", str(path), "--format", "json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["totals"]["devices"] == len(data["devices"])
    assert runner.invoke(main, ["inventory", "show", str(path)]).exit_code == 0


def test_usable_memory_rules() -> None:
    homelab = load_inventory(ROOT / "inventories" / "homelab.yaml")
    by_id = {d.id: d for d in homelab.devices}
    assert by_id["gpu-box/gpu0"].spec.id == "rtx-4090"
    assert by_id["gpu-box/gpu0"].usable_bytes == int(24 * GiB - 1 * GB)  # reserved 1 GB for the display
    assert by_id["gpu-box/gpu1"].usable_bytes == 24 * GiB
    macs = load_inventory(ROOT / "inventories" / "mac-studio-cluster.yaml")
    assert {d.usable_bytes for d in macs.devices} == {480 * GB}  # the wired limit
    mixed = load_inventory(ROOT / "inventories" / "mixed-gpu-mac.yaml")
    studio = next(d for d in mixed.devices if d.node == "studio")
    assert studio.usable_bytes == int(192 * GiB * studio.spec.gpu_memory_fraction)  # macOS default share


def test_node_count_expands_names() -> None:
    cluster = load_inventory(ROOT / "inventories" / "h100-2node-ib.yaml")
    assert [n.name for n in cluster.nodes] == ["hgx-1", "hgx-2"]
    assert cluster.devices[8].id == "hgx-2/gpu0"


def test_custom_device() -> None:
    cluster = load_text("""
name: custom
nodes:
  - name: studio
    devices:
      - type: custom
        name: my-mac
        memory_gb: 192
        bandwidth_gb_s: 800
        fp16_tflops: 27
        unified_memory: true
        usable_memory_fraction: 0.75
""")
    device = cluster.devices[0]
    assert device.memory_bytes == int(192 * GB) and device.usable_bytes == int(192 * GB * 0.75)
    assert device.spec.unified_memory and cluster.nodes[0].interconnect.id == "unified"


BAD = [
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - type: rtx-4009\n", 5, "did you mean 'rtx-4090'"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - type: rtx-4090\n        count: -2\n", 6, "count"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - type: rtx-4090\n        cuont: 2\n", 6, "did you mean 'count'"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - type: rtx-4090\n    interconect: pcie-4\n", 6, "did you mean 'interconnect'"),
    ("name: x\nnodes:\n  - name: a\n    interconnect: pcie-9\n    devices:\n      - type: rtx-4090\n", 4, "pcie-"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - type: custom\n        memory_gb: 10\n", 5, "bandwidth_gb_s"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - type: rtx-4090\n        memory_gb: 10\n", 5, "only apply to type: custom"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - {type: rtx-4090}\n  - name: b\n    devices:\n      - {type: rtx-4090}\n", 2, "not all connected"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - {type: rtx-4090}\n  - name: b\n    devices:\n      - {type: rtx-4090}\n"
     "network:\n  links:\n    - between: [a, c]\n      type: ethernet-10g\n", 11, "no node named 'c'"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - {type: rtx-4090}\nnetwork: etherner-10g\n", 6, "did you mean 'ethernet-10g'"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - {type: rtx-4090, reserved_gb: 40}\n", 5, "no memory left"),
    ("name: x\nnodes:\n  - name: a\n    devices:\n      - type: rtx-4090\n  - name: a\n    devices:\n      - type: rtx-4090\nnetwork: ethernet-10g\n", 6, "used twice"),
    ("name: x\nnodes:\n  - name: a\n    devices: [\n", 5, "not valid YAML"),
    ("name: x\nnodes: []\n", 2, "nodes"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_bad_inventory_names_line_field_and_fix(text: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as err:
        load_text(text)
    assert message in str(err.value)
    assert err.value.line == line, str(err.value)
    assert err.value.exit_code == 2


def test_cli_error_is_one_line_with_file_line_and_column(runner, tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(BAD[0][0])
    result = runner.invoke(main, ["inventory", "validate", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {path}:5:15: nodes.0.devices.0.type:")
    assert len(result.output.strip().splitlines()) == 1
    missing = runner.invoke(main, ["inventory", "show", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def _mutations():
    base = yaml.safe_load((ROOT / "inventories" / "mixed-gpu-mac.yaml").read_text())
    values = st.one_of(st.none(), st.integers(-5, 5000), st.floats(allow_nan=True), st.text(max_size=12),
                       st.booleans(), st.lists(st.integers(), max_size=2), st.just("rtx-4090"), st.just({}))
    paths = [("name",), ("nodes",), ("network",), ("nodes", 0, "name"), ("nodes", 0, "count"),
             ("nodes", 0, "devices"), ("nodes", 0, "interconnect"), ("nodes", 0, "devices", 0, "type"),
             ("nodes", 0, "devices", 0, "count"), ("nodes", 1, "devices", 0, "wired_limit_gb"),
             ("nodes", 1, "usable_memory_fraction"), ("nodes", 0, "devices", 0, "reserved_gb"),
             ("nodes", 0, "extra_key"), ("nodes", 1, "devices", 0, "memory_gb")]
    return base, st.lists(st.tuples(st.sampled_from(paths), values), min_size=1, max_size=3)


_BASE, _MUTATIONS = _mutations()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MUTATIONS)
def test_random_mutations_are_valid_or_a_clear_input_error(mutations) -> None:
    data = json.loads(json.dumps(_BASE))
    for path, value in mutations:
        target = data
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    text = yaml.safe_dump(data)
    try:
        load_text(text, "mutated.yaml")
    except InputError as err:
        assert str(err).startswith("mutated.yaml")
        assert err.exit_code == 2


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_valid_or_a_clear_input_error(text: str) -> None:
    try:
        load_text(text, "fuzz.yaml")
    except InputError as err:
        assert str(err).startswith("fuzz.yaml")


def test_schema_is_json_schema_with_descriptions(runner) -> None:
    result = runner.invoke(main, ["schema", "inventory"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "planner inventory" and "nodes" in schema["properties"]
    for definition in schema["$defs"].values():
        for name, prop in definition.get("properties", {}).items():
            assert prop.get("description"), name
