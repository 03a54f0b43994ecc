"""Quick inventories from the command line, without a file:

  --gpus 2xrtx-3090,rtx-4090          one machine with these devices
  --nodes 2x(8xh100-sxm)+(4xl40s)     machines: a count, then the devices of each in brackets

Machines are named n1, n2, ... in order. Inside a machine the devices talk over NVSwitch when they
are identical SXM parts (NVLink of 300 GB/s or more, not a PCIe or NVL card), Infinity Fabric when
they are identical AMD Instinct (CDNA) modules, unified memory on a Mac, PCIe of the devices'
generation otherwise; machines talk over InfiniBand NDR when they are
NVSwitch machines, 10 Gb Ethernet otherwise. --interconnect and --network override both (a
Thunderbolt network is a mesh, every machine cabled to every other), and the plan's inventory name
spells out what was assumed."""

from __future__ import annotations

import re

import yaml

from planner.errors import InputError
from planner.limits import MAX_DEVICES, MAX_NODES
from planner.loaders.hardware import find_hardware
from planner.loaders.inventory import build_cluster
from planner.loaders.yamlfile import parse_yaml_text
from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Cluster

_ITEM = re.compile(r"^(?:(\d+)\s*[x×*]\s*)?([A-Za-z0-9][A-Za-z0-9.\-]*)$")
_GROUP = re.compile(r"^(?:(\d+)\s*[x×*]\s*)?\((.*)\)$")


def _count(match: re.Match, part: str, limit: int, what: str, option: str) -> int:
    count = int(match.group(1) or 1)
    if not 1 <= count <= limit:
        raise InputError(f"'{part}': a {what}count from 1 to {limit:,}", field=option)
    return count


def _items(text: str, option: str) -> list[tuple[int, HardwareSpec]]:
    out = []
    for part in text.split(","):
        part = part.strip()
        match = _ITEM.match(part)
        if not match:
            raise InputError(f"'{part}' is not COUNTxTYPE or TYPE (e.g. 2xrtx-3090)", field=option)
        count = _count(match, part, MAX_DEVICES, "", option)
        try:
            spec = find_hardware(match.group(2))
        except InputError as err:
            raise InputError(err.detail, field=option, suggestion=err.suggestion) from None
        out.append((count, spec))
    return out


def is_sxm_part(spec: HardwareSpec) -> bool:
    """An SXM module on an NVSwitch board: NVLink of 300 GB/s or more, not a PCIe or NVL card."""
    return (spec.nvlink_bandwidth_gb_s or 0) >= 300 and "pcie" not in spec.id and "nvl" not in spec.id


def _interconnect(items: list[tuple[int, HardwareSpec]]) -> str:
    specs = {spec.id: spec for _, spec in items}
    if any(s.unified_memory for s in specs.values()):
        return "unified"
    if len(specs) == 1:
        spec = next(iter(specs.values()))
        if is_sxm_part(spec) and sum(n for n, _ in items) > 1:
            return "nvswitch"
        if spec.vendor == "amd" and (spec.gfx_target or "").startswith("gfx9") and sum(n for n, _ in items) > 1:
            return "infinity-fabric"  # CDNA Instinct parts are OAM modules on an xGMI platform
    generation = min((s.pcie_generation or 4 for s in specs.values()), default=4)
    return f"pcie-{min(max(generation, 3), 5)}"


def _machine(items: list[tuple[int, HardwareSpec]], interconnect: str | None) -> dict:
    return {"interconnect": interconnect or _interconnect(items),
            "devices": [{"type": spec.id, "count": count} for count, spec in items]}


def build_shorthand_cluster(*, gpus: str | None = None, nodes: str | None = None, interconnect: str | None = None,
                            network: str | None = None) -> Cluster:
    """The cluster a --gpus or --nodes shorthand describes (exactly one of them)."""
    option = "--gpus" if gpus is not None else "--nodes"
    text = (gpus if gpus is not None else nodes or "").strip()
    if not text:
        raise InputError("name the devices, e.g. --gpus 2xrtx-3090,rtx-4090 or --nodes 2x(8xh100-sxm)", field=option)
    machines: list[tuple[int, dict]] = []
    if gpus is not None:
        machines.append((1, _machine(_items(text, option), interconnect)))
    else:
        for group in re.split(r"\+(?![^()]*\))", text):
            group = group.strip()
            match = _GROUP.match(group)
            if not match:
                raise InputError(f"'{group}' is not COUNTx(DEVICES) or (DEVICES), e.g. 2x(8xh100-sxm)", field=option)
            count = _count(match, group, MAX_NODES, "machine ", option)
            machines.append((count, _machine(_items(match.group(2), option), interconnect)))
    entries, k = [], 0
    for count, machine in machines:
        for _ in range(count):
            k += 1
            if k > MAX_NODES:
                raise InputError(f"more than {MAX_NODES:,} machines", field=option)
            entries.append({"name": f"n{k}", **machine})
    if network is None:
        network = "infiniband-ndr" if all(e["interconnect"] == "nvswitch" for e in entries) else "ethernet-10g"
    inside = sorted({e["interconnect"] for e in entries})
    label = f"{option} {text} ({', '.join(inside)} inside{f', {network} between machines' if len(entries) > 1 else ''})"
    data = {"name": "shorthand", "description": label, "nodes": entries}
    if len(entries) > 1 and network.startswith("thunderbolt"):
        # Thunderbolt has no switch: every machine cabled to every other (a mesh, as exo's clusters are).
        names = [e["name"] for e in entries]
        data["network"] = {"links": [{"between": [a, b], "type": network} for i, a in enumerate(names) for b in names[i + 1:]]}
    elif len(entries) > 1:
        data["network"] = network
    try:
        cluster = build_cluster(parse_yaml_text(yaml.safe_dump(data, sort_keys=False), option))
    except InputError as err:
        where = {"interconnect": "--interconnect", "network": "--network"}
        field = next((v for k, v in where.items() if k in (err.field or "") or k in err.detail), option)
        raise InputError(err.detail, field=field, suggestion=err.suggestion) from None
    return cluster.model_copy(update={"name": label, "source": None})
