"""`plan inventory validate|show|detect` and `plan schema inventory`."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from planner.errors import InputError, shorten
from planner.loaders.detect import (
    NVIDIA_SMI_QUERY,
    detect_format,
    parse_nvidia_smi_csv,
    parse_nvidia_smi_xml,
    parse_system_profiler,
)
from planner.loaders.inventory import build_cluster, load_inventory
from planner.limits import MAX_DETECT_FILE_BYTES
from planner.loaders.files import read_text
from planner.loaders.yamlfile import Located
from planner.report.inventory import to_inventory_dict, to_inventory_text
from planner.schemas.inventory import InventoryFile
from planner.units import to_gib

_PARSERS = {
    "nvidia-smi-csv": parse_nvidia_smi_csv,
    "nvidia-smi-xml": parse_nvidia_smi_xml,
    "system-profiler": parse_system_profiler,
}


def run_inventory_show(path: str) -> tuple[dict[str, Any], Callable[[Any], str]]:
    """Devices, memory, links and fast domains of an inventory."""
    return to_inventory_dict(load_inventory(path)), to_inventory_text


def run_inventory_validate(path: str) -> str:
    """A one-line summary of a valid inventory (errors raise)."""
    cluster = load_inventory(path)
    devices = cluster.devices
    usable = to_gib(sum(d.usable_bytes for d in devices))
    return f"{path}: valid: {len(cluster.nodes)} node(s), {len(devices)} device(s), {usable:,.1f} GiB usable"


def run_schema_inventory() -> dict[str, Any]:
    """The JSON Schema of inventory files."""
    schema = InventoryFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "planner inventory"
    return schema


def _run(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        raise InputError(f"'{command[0]}' is not on this machine; pass its saved output with --from-file", field="detect")
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise InputError(f"'{' '.join(command)}' failed: {exc}", field="detect") from None


def run_inventory_detect(from_file: str | None, source_format: str | None, node: str | None) -> dict[str, Any]:
    """Inventory data for this machine, or for saved nvidia-smi / system_profiler output."""
    if node is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", node):
        raise InputError(f"'{shorten(node)}' is not a node name: letters, digits, '.', '_' and '-', starting with a "
                         f"letter or digit", field="--node-name")
    node = node or (re.sub(r"[^A-Za-z0-9_.\-]", "-", platform.node().split(".")[0]).strip("-.") or "local")
    if from_file:
        text = read_text(Path(from_file), limit=MAX_DETECT_FILE_BYTES, what="saved nvidia-smi or system_profiler output")
        source = from_file
    elif platform.system() == "Darwin":
        text, source = _run(["system_profiler", "SPHardwareDataType", "SPDisplaysDataType", "-json"]), "system_profiler"
    else:
        text = _run(["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv"])
        source = "nvidia-smi"
    kind = source_format or detect_format(text)
    data = _PARSERS[kind](text, node=node, source=source)
    build_cluster(Located(data, {}, source))  # what we write must load
    return data
