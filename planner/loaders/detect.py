"""Turn `nvidia-smi` (CSV or XML) and macOS `system_profiler -json` output into inventory data."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import xml.etree.ElementTree as ET
from importlib import resources
from typing import Any

from planner.errors import InputError
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.yamlfile import parse_yaml_text


# nvidia-smi --query-gpu fields this parser reads, in the order it expects without a header.
NVIDIA_SMI_QUERY = "index,name,memory.total,pcie.link.gen.max,pcie.link.width.max"


@functools.cache
def _product_names() -> dict[str, str]:
    text = resources.files("planner.catalog").joinpath("detect-names.yaml").read_text(encoding="utf-8")
    return parse_yaml_text(text, "planner/catalog/detect-names.yaml").data["nvidia-smi"]


def _normalise(name: str) -> str:
    name = re.sub(r"\b(nvidia|geforce|tesla)\b", " ", name.lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def match_gpu_name(product: str, *, source: str) -> str:
    """The catalog id of an nvidia-smi product name."""
    catalog = load_hardware_catalog()
    mapped = _product_names().get(product.strip())
    if mapped and mapped in catalog:
        return mapped
    key = _normalise(product)
    if key in catalog:
        return key
    raise InputError(
        f"GPU '{product}' is not in the hardware catalog; describe it as type: custom in the inventory",
        file=source, field="name",
    )


def _interconnect(ids: list[str], pcie_gen: int | None) -> str:
    catalog = load_hardware_catalog()
    specs = [catalog[i] for i in ids]
    if len(ids) >= 8 and all((s.nvlink_bandwidth_gb_s or 0) >= 600 for s in specs):
        return "nvswitch"  # 8-GPU NVLink boards (HGX/DGX) connect through NVSwitch
    gen = min(max(pcie_gen or 4, 3), 5)
    return f"pcie-{gen}"


def _inventory(node: str, ids: list[str], interconnect: str) -> dict[str, Any]:
    devices: list[dict[str, Any]] = []
    for device_id in ids:
        if devices and devices[-1]["type"] == device_id:
            devices[-1]["count"] = devices[-1].get("count", 1) + 1
        else:
            devices.append({"type": device_id})
    return {"name": node, "nodes": [{"name": node, "devices": devices, "interconnect": interconnect}]}


def parse_nvidia_smi_csv(text: str, *, node: str, source: str) -> dict[str, Any]:
    """Inventory data from `nvidia-smi --query-gpu=<NVIDIA_SMI_QUERY> --format=csv[,noheader][,nounits]`."""
    rows = [r for r in csv.reader(io.StringIO(text), skipinitialspace=True) if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError("no GPUs in the nvidia-smi output", file=source)
    header = [c.strip().split(" [")[0] for c in rows[0]]
    has_header = "name" in header
    if has_header:
        rows = rows[1:]
    else:
        header = NVIDIA_SMI_QUERY.split(",")
    gpus = []
    for number, row in enumerate(rows, start=2 if has_header else 1):
        record = dict(zip(header, (c.strip() for c in row)))
        if "name" not in record:
            raise InputError("row has fewer columns than the header", file=source, line=number)
        gpus.append((record["name"], record.get("pcie.link.gen.max", "")))
    return _gpu_inventory(node, gpus, source)


def _gpu_inventory(node: str, gpus: list[tuple[str, str]], source: str) -> dict[str, Any]:
    """Inventory data from (product name, max PCIe generation) pairs."""
    ids = [match_gpu_name(product, source=source) for product, _ in gpus]
    known = [int(gen) for _, gen in gpus if gen.strip().isdigit()]
    return _inventory(node, ids, _interconnect(ids, min(known) if known else None))


def parse_nvidia_smi_xml(text: str, *, node: str, source: str) -> dict[str, Any]:
    """Inventory data from `nvidia-smi -q -x`."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, column = exc.position
        raise InputError(f"not valid XML: {exc}", file=source, line=line, column=column) from None
    gpus = root.findall("gpu")
    if not gpus:
        raise InputError("no <gpu> elements in the nvidia-smi XML", file=source)
    pairs = []
    for gpu in gpus:
        product = gpu.findtext("product_name")
        if not product:
            raise InputError("a <gpu> has no <product_name>", file=source, field="product_name")
        pairs.append((product, gpu.findtext("pci/pci_gpu_link_info/pcie_gen/max_link_gen") or ""))
    return _gpu_inventory(node, pairs, source)


def parse_system_profiler(text: str, *, node: str, source: str) -> dict[str, Any]:
    """Inventory data from `system_profiler SPHardwareDataType SPDisplaysDataType -json` on a Mac."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", file=source, line=exc.lineno, column=exc.colno) from None
    hardware = (data.get("SPHardwareDataType") or [{}])[0]
    chip = hardware.get("chip_type") or ""
    memory = hardware.get("physical_memory") or ""
    displays = data.get("SPDisplaysDataType") or []
    cores = next((d.get("sppci_cores") for d in displays if d.get("sppci_cores")), None)
    match = re.match(r"^Apple (M\d)(?: (Pro|Max|Ultra))?$", chip.strip())
    memory_match = re.match(r"^(\d+)\s*GB$", memory.strip())
    if not match or not memory_match or not cores:
        raise InputError(
            "expected an Apple Silicon chip_type, physical_memory and the GPU's sppci_cores", file=source,
            field="SPHardwareDataType.chip_type" if not match else "SPDisplaysDataType.sppci_cores",
        )
    chip_id = match.group(1).lower() + (f"-{match.group(2).lower()}" if match.group(2) else "")
    device_id = f"{chip_id}-{int(cores)}c-{int(memory_match.group(1))}gb"
    if device_id not in load_hardware_catalog():
        raise InputError(f"'{device_id}' is not in the hardware catalog; describe it as type: custom", file=source)
    return {"name": node, "nodes": [{"name": node, "devices": [{"type": device_id}], "interconnect": "unified"}]}


def detect_format(text: str) -> str:
    """Which of the three outputs `text` is."""
    stripped = text.lstrip()
    if stripped.startswith("<"):
        return "nvidia-smi-xml"
    if stripped.startswith("{"):
        return "system-profiler"
    return "nvidia-smi-csv"


