"""`plan inventory detect` on captured nvidia-smi and system_profiler outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from planner.cli import main
from planner.errors import InputError
from planner.loaders.detect import parse_nvidia_smi_csv, parse_nvidia_smi_xml, parse_system_profiler
from planner.loaders.inventory import load_inventory

DATA = Path(__file__).parent / "data" / "detect"


def test_nvidia_smi_csv_with_header() -> None:
    data = parse_nvidia_smi_csv((DATA / "nvidia-smi-homelab.csv").read_text(), node="box", source="x")
    node = data["nodes"][0]
    assert node["devices"] == [{"type": "rtx-4090"}, {"type": "rtx-3090", "count": 2}]
    assert node["interconnect"] == "pcie-4"


def test_nvidia_smi_csv_without_header() -> None:
    data = parse_nvidia_smi_csv((DATA / "nvidia-smi-noheader.csv").read_text(), node="box", source="x")
    assert data["nodes"][0]["devices"] == [{"type": "rtx-a6000", "count": 2}]


def test_nvidia_smi_xml_dgx() -> None:
    data = parse_nvidia_smi_xml((DATA / "nvidia-smi-dgx-h100.xml").read_text(), node="dgx", source="x")
    assert data["nodes"][0] == {"name": "dgx", "devices": [{"type": "h100-sxm", "count": 8}], "interconnect": "nvswitch"}


def test_system_profiler_mac_studio() -> None:
    data = parse_system_profiler((DATA / "system-profiler-m2-ultra.json").read_text(), node="studio", source="x")
    assert data["nodes"][0]["devices"] == [{"type": "m2-ultra-76c-192gb"}]


def test_unknown_gpu_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="not in the hardware catalog"):
        parse_nvidia_smi_csv("0, NVIDIA Mystery GPU 9000, 1000, 4, 16\n", node="n", source="x")
    with pytest.raises(InputError, match="not valid XML"):
        parse_nvidia_smi_xml("<nvidia_smi_log><gpu>", node="n", source="x")


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.iterdir()))
def test_cli_detect_writes_a_valid_inventory_atomically(runner, tmp_path: Path, name: str) -> None:
    out = tmp_path / "sub" / "detected.yaml"
    missing = runner.invoke(main, ["inventory", "detect", "--from-file", str(DATA / name), "--node-name", "here", "-o", str(out)])
    assert missing.exit_code == 2 and "does not exist" in missing.output  # a missing folder is said, not created
    out.parent.mkdir()
    result = runner.invoke(main, ["inventory", "detect", "--from-file", str(DATA / name), "--node-name", "here", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_inventory(out).nodes[0].name == "here"
    assert [p.name for p in out.parent.iterdir()] == ["detected.yaml"]  # no temporary file left behind
    printed = runner.invoke(main, ["inventory", "detect", "--from-file", str(DATA / name), "--node-name", "here"])
    assert yaml.safe_load(printed.output) == yaml.safe_load(out.read_text())
