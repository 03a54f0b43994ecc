"""Turn `nvidia-smi` (CSV or XML) and macOS `system_profiler -json` output into inventory data."""

from __future__ import annotations

import csv
import functools
import io
import re
import xml.etree.ElementTree as ET
from typing import Any

from planner.errors import InputError, shorten
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.catalog_files import read_catalog_file
from planner.loaders.yamlfile import parse_json_text


# nvidia-smi --query-gpu fields this parser reads, in the order it expects without a header.
NVIDIA_SMI_QUERY = "index,name,memory.total,pcie.link.gen.max,pcie.link.width.max"


@functools.cache
def _product_names() -> dict[str, str]:
    return read_catalog_file("detect-names.yaml").data["nvidia-smi"]


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


MAX_GPUS_PER_MACHINE = 4096  # the most devices of one kind an inventory node holds


def _gpu_inventory(node: str, gpus: list[tuple[str, str]], source: str) -> dict[str, Any]:
    """Inventory data from (product name, max PCIe generation) pairs."""
    if len(gpus) > MAX_GPUS_PER_MACHINE:
        raise InputError(f"{len(gpus):,} GPUs in one machine; the limit is {MAX_GPUS_PER_MACHINE:,}", file=source)
    ids = [match_gpu_name(product, source=source) for product, _ in gpus]
    known = []
    for _, gen in gpus:
        text = gen.strip()
        if text.isdigit() and len(text) <= 2:
            known.append(int(text))
        elif text and text.strip("[]").lower() not in ("n/a", "not supported", "unknown"):
            raise InputError(f"expected a PCIe generation (a small number or N/A), got {shorten(repr(text), 60)}",
                             file=source, field="pcie.link.gen.max")
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
    data = parse_json_text(text, source).data
    if not isinstance(data, dict):
        raise InputError("expected a JSON object with SPHardwareDataType and SPDisplaysDataType", file=source)
    hardware_list = data.get("SPHardwareDataType") or [{}]
    displays = data.get("SPDisplaysDataType") or []
    if not isinstance(hardware_list, list) or not hardware_list or not isinstance(hardware_list[0], dict):
        raise InputError("expected a list of objects", file=source, field="SPHardwareDataType")
    if not isinstance(displays, list) or not all(isinstance(d, dict) for d in displays):
        raise InputError("expected a list of objects", file=source, field="SPDisplaysDataType")
    hardware = hardware_list[0]
    chip = hardware.get("chip_type") or ""
    memory = hardware.get("physical_memory") or ""
    if not isinstance(chip, str) or not isinstance(memory, str):
        raise InputError("expected text for chip_type and physical_memory", file=source, field="SPHardwareDataType")
    cores = next((d.get("sppci_cores") for d in displays if d.get("sppci_cores")), None)
    whole = (isinstance(cores, int) and not isinstance(cores, bool) and 0 < cores < 10_000) or (
        isinstance(cores, str) and cores.isdigit() and len(cores) <= 4)
    if cores is not None and not whole:
        raise InputError(f"expected a number of GPU cores, got {shorten(repr(cores), 60)}", file=source,
                         field="SPDisplaysDataType.sppci_cores")
    match = re.match(r"^Apple (M\d)(?: (Pro|Max|Ultra))?$", chip.strip())
    memory_match = re.match(r"^(\d{1,6})\s*GB$", memory.strip())
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


