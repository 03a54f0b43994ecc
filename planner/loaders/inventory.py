"""Read an inventory YAML file into a resolved Cluster, with errors that point at the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from planner.errors import InputError, suggest_name
from planner.limits import MAX_DEVICE_TYPES, MAX_DEVICES, MAX_INVENTORY_FILE_BYTES, MAX_NETWORK_LINKS, MAX_NODES
from planner.loaders.files import read_text
from planner.loaders.hardware import find_hardware, load_hardware_catalog
from planner.loaders.links import find_link
from planner.loaders.validation import to_input_error
from planner.loaders.yamlfile import Located, parse_yaml_text
from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import (
    Cluster,
    Device,
    DeviceEntry,
    InventoryFile,
    NetworkEntry,
    NetworkLink,
    Node,
    NodeEntry,
    Ports,
)
from planner.units import GB, GiB

def _check_size(inventory: InventoryFile, located: Located) -> None:
    """The documented limits (planner/limits.py), checked before any node is expanded."""
    nodes = sum(n.count for n in inventory.nodes)
    if nodes > MAX_NODES:
        raise located.error(("nodes",), f"{nodes:,} nodes once counts are expanded; the limit is {MAX_NODES:,}")
    devices = sum(n.count * sum(d.count for d in n.devices) for n in inventory.nodes)
    if devices > MAX_DEVICES:
        raise located.error(("nodes",), f"{devices:,} devices once counts are expanded; the limit is {MAX_DEVICES:,}")
    kinds = {d.type if d.type != "custom" else f"custom:{d.name}:{i}:{j}"
             for i, n in enumerate(inventory.nodes) for j, d in enumerate(n.devices)}
    if len(kinds) > MAX_DEVICE_TYPES:
        raise located.error(("nodes",), f"{len(kinds):,} distinct device types; the limit is {MAX_DEVICE_TYPES}")
    network = inventory.network
    if not isinstance(network, str) and network is not None and len(network.links) > MAX_NETWORK_LINKS:
        raise located.error(("network", "links"), f"{len(network.links):,} links; the limit is {MAX_NETWORK_LINKS:,}")


def _custom_spec(entry: DeviceEntry, node: str, index: int, file: str) -> HardwareSpec:
    memory_gib = entry.memory_gib if entry.memory_gib is not None else entry.memory_gb * GB / GiB
    tensor_cores = bool(entry.tensor_cores)
    unified = bool(entry.unified_memory)
    fp32 = entry.fp32_tflops or (entry.fp16_tflops / 2 if tensor_cores else entry.fp16_tflops)
    return HardwareSpec(
        id=(entry.name or f"custom-{node}-{index}").lower(),
        name=entry.name or "custom device",
        vendor="other",
        kind="soc" if unified else "gpu",
        memory_gib=memory_gib,
        memory_bandwidth_gb_s=entry.bandwidth_gb_s,
        fp32_tflops=fp32,
        fp16_tflops=entry.fp16_tflops,
        fp8_tflops=entry.fp8_tflops,
        int8_tops=entry.int8_tops,
        tensor_cores=tensor_cores,
        unified_memory=unified,
        power_w=entry.power_w,
        source=f"inventory {file}",
        notes="described in the inventory (type: custom)",
    )


def _pick(device: DeviceEntry, node: NodeEntry, key: str) -> Any:
    value = getattr(device, key)
    return value if value is not None else getattr(node, key)


def _usable_bytes(spec: HardwareSpec, device: DeviceEntry, node: NodeEntry, located: Located, path: tuple) -> int:
    total = spec.memory_gib * GiB
    wired = _pick(device, node, "wired_limit_gb")
    fraction = _pick(device, node, "usable_memory_fraction")
    if wired is not None:
        if wired * GB > total:
            raise located.error(path + ("wired_limit_gb",), f"{wired} GB exceeds the device's {total / GB:.1f} GB of memory")
        usable = wired * GB
    else:
        usable = total * (fraction if fraction is not None else spec.gpu_memory_fraction)
    usable -= (_pick(device, node, "reserved_gb") or 0) * GB + (_pick(device, node, "used_gb") or 0) * GB
    if usable <= 0:
        raise located.error(path, f"no memory left: reserved and used memory exceed what {spec.id} can give")
    return int(usable)


def _node_names(entries: list[NodeEntry], located: Located) -> list[list[str]]:
    names: list[list[str]] = []
    seen: dict[str, int] = {}
    for i, node in enumerate(entries):
        expanded = [node.name] if node.count == 1 else [f"{node.name}-{k}" for k in range(1, node.count + 1)]
        for name in expanded:
            if name in seen:
                raise located.error(("nodes", i, "name"), f"node name '{name}' is used twice")
            seen[name] = i
        names.append(expanded)
    return names


def _check_addresses(nodes: list[Node], inventory: InventoryFile, located: Located) -> None:
    seen: dict[str, str] = {}
    for node in nodes:
        if node.address is None:
            continue
        if node.address.lower() in seen:
            index = next(i for i, e in enumerate(inventory.nodes) if node.name == e.name or node.name.startswith(e.name + "-"))
            raise located.error(("nodes", index, "address"), f"address {node.address} is given to both "
                                f"{seen[node.address.lower()]} and {node.name}")
        seen[node.address.lower()] = node.name


def build_cluster(located: Located) -> Cluster:
    """Validate parsed inventory data and resolve it into a Cluster."""
    if not isinstance(located.data, dict):
        raise located.error((), "expected a mapping with name, nodes and network")
    try:
        inventory = InventoryFile(**located.data)
    except ValidationError as exc:
        raise to_input_error(exc, located=located, schema=InventoryFile) from None
    _check_size(inventory, located)
    names = _node_names(inventory.nodes, located)
    nodes: list[Node] = []
    for i, entry in enumerate(inventory.nodes):
        specs: list[tuple[HardwareSpec, DeviceEntry, int]] = []
        for j, device in enumerate(entry.devices):
            path = ("nodes", i, "devices", j)
            if device.type == "custom":
                if device.name and device.name.lower() in load_hardware_catalog():
                    raise located.error(path + ("name",), f"'{device.name}' is a catalog id; a custom device needs a "
                                        f"name of its own (or use type: {device.name.lower()} for the catalog figures)")
                spec = _custom_spec(device, entry.name, j, located.file)
            else:
                try:
                    spec = find_hardware(device.type)
                except InputError as err:
                    raise located.error(path + ("type",), err.detail, err.suggestion) from None
            specs.append((spec, device, j))
        unified = [s for s, _, _ in specs if s.unified_memory]
        if unified and (len(specs) > 1 or specs[0][1].count > 1):
            raise located.error(("nodes", i, "devices"), "a unified-memory machine (a Mac, a SoC) is one device per node")
        default_link = "unified" if unified else "pcie-4"
        try:
            interconnect = find_link(entry.interconnect or default_link, scope="intra-node")
        except InputError as err:
            raise located.error(("nodes", i, "interconnect"), err.detail, err.suggestion) from None
        addresses = [entry.address] if isinstance(entry.address, str) else (entry.address or [None] * len(names[i]))
        ports = Ports(**entry.ports.model_dump()) if entry.ports else Ports()
        for name, address in zip(names[i], addresses):
            devices: list[Device] = []
            for spec, device, j in specs:
                usable = _usable_bytes(spec, device, entry, located, ("nodes", i, "devices", j))
                price = _pick(device, entry, "price_usd") if device.price_usd is not None else (
                    spec.price.usd if spec.price else None)
                for _ in range(device.count):
                    devices.append(Device(
                        id=f"{name}/gpu{len(devices)}", node=name, index=len(devices), spec=spec,
                        memory_bytes=int(spec.memory_gib * GiB), usable_bytes=usable, price_usd=price,
                    ))
            host = int(entry.host_memory_gb * GB) if entry.host_memory_gb else None
            nodes.append(Node(name=name, devices=tuple(devices), interconnect=interconnect, host_memory_bytes=host,
                              host_memory_bandwidth_gb_s=_host_bandwidth_gb_s(entry), host_cpu_cores=entry.host_cpu_cores,
                              address=address, ports=ports))
    _check_addresses(nodes, inventory, located)
    links = _build_links(inventory, [n for group in names for n in group], located)
    return Cluster(name=inventory.name, nodes=tuple(nodes), links=tuple(links), source=located.file)


def _host_bandwidth_gb_s(entry: NodeEntry) -> float | None:
    """Peak CPU-RAM bandwidth: as given, or channels x MT/s x 8 bytes (a 64-bit channel moves 8
    bytes per transfer; JEDEC DDR4/DDR5)."""
    if entry.host_memory_bandwidth_gb_s is not None:
        return entry.host_memory_bandwidth_gb_s
    if entry.host_memory_channels and entry.host_memory_mt_s:
        return entry.host_memory_channels * entry.host_memory_mt_s * 8 / 1000
    return None


def _build_links(inventory: InventoryFile, node_names: list[str], located: Located) -> list[NetworkLink]:
    network = inventory.network
    if isinstance(network, str):
        network = NetworkEntry(default=network)
    network = network or NetworkEntry()
    out: list[NetworkLink] = []
    if network.default:
        path = ("network",) if isinstance(inventory.network, str) else ("network", "default")
        try:
            link = find_link(network.default, scope="network", field="network")
        except InputError as err:
            raise located.error(path, err.detail, err.suggestion) from None
        out += [NetworkLink(a=name, b=None, link=link, count=network.rails) for name in node_names]
    known = set(node_names)
    for k, entry in enumerate(network.links):
        path = ("network", "links", k)
        label = f"link {entry.between[0]} <-> {entry.between[1]}"
        for end, name in enumerate(entry.between):
            if name not in known:
                raise located.error(path + ("between", end), f"{label}: no node named '{name}'", suggest_name(name, node_names))
        if entry.between[0] == entry.between[1]:
            raise located.error(path + ("between",), f"{label}: a link needs two different nodes")
        try:
            link = find_link(entry.type, scope="network", field="type")
        except InputError as err:
            raise located.error(path + ("type",), f"{label}: {err.detail}", err.suggestion) from None
        out.append(NetworkLink(a=entry.between[0], b=entry.between[1], link=link, count=entry.count))
    _check_connected(node_names, out, located)
    return out


def _check_connected(node_names: list[str], links: list[NetworkLink], located: Located) -> None:
    if len(node_names) < 2:
        return
    parent = {n: n for n in node_names + ["*switch*"]}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for link in links:
        parent[find(link.a)] = find(link.b or "*switch*")
    groups: dict[str, list[str]] = {}
    for name in node_names:
        groups.setdefault(find(name), []).append(name)
    if len(groups) > 1:
        parts = sorted(groups.values(), key=lambda g: node_names.index(g[0]))
        raise located.error(
            ("network",) if ("network",) in located.marks else ("nodes",), "nodes are not all connected: " + " | ".join(", ".join(g) for g in parts)
            + "; give network: <link type> or links between them",
        )


def load_inventory(path: str | Path) -> Cluster:
    """Read and resolve an inventory file."""
    path = Path(path)
    return build_cluster(parse_yaml_text(read_text(path, limit=MAX_INVENTORY_FILE_BYTES, what="inventory file"), str(path)))
