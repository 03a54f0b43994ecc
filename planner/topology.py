"""The cluster as a graph of devices and links: bandwidth and latency between any two devices,
the fast domains where tensor parallelism is sensible, and the link a pipeline hop uses.

The only module that imports networkx; everything else sees the Topology class.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from planner.schemas.inventory import Cluster, Device
from planner.schemas.link import LinkSpec

_SWITCH = "switch:"


@dataclass(frozen=True)
class Route:
    """What a transfer between two devices goes through."""

    bandwidth_gb_s: float  # the narrowest link on the widest path, per direction
    latency_us: float  # sum of the links' one-way latencies
    bottleneck: str  # id of the narrowest link type
    hops: tuple[str, ...]  # link type ids along the path


@dataclass(frozen=True)
class FastDomain:
    """Identical devices inside one machine joined by a link fit for tensor parallelism."""

    node: str
    device_type: str
    device_ids: tuple[str, ...]
    link: str
    bandwidth_gb_s: float


def _intra_bandwidth(link: LinkSpec, device: Device) -> float:
    if link.id == "nvswitch" and device.spec.nvlink_bandwidth_gb_s:
        return device.spec.nvlink_bandwidth_gb_s / 2  # catalog NVLink figures are both directions
    if link.id == "unified":
        return device.spec.memory_bandwidth_gb_s
    return link.bandwidth_gb_s


class Topology:
    """A networkx graph of devices, machine hubs and network switches."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._devices = {d.id: d for d in cluster.devices}
        graph = nx.Graph()
        for node in cluster.nodes:
            hub = f"hub:{node.name}"
            graph.add_node(hub)
            for device in node.devices:
                # Half the link latency on each side of the hub: device -> hub -> device is one link.
                graph.add_edge(device.id, hub, bandwidth=_intra_bandwidth(node.interconnect, device),
                               latency=node.interconnect.latency_us / 2, link=node.interconnect.id)
        for net in cluster.links:
            a, b = f"hub:{net.a}", (f"hub:{net.b}" if net.b else f"{_SWITCH}{net.link.id}")
            bandwidth = net.link.bandwidth_gb_s * net.count
            if graph.has_edge(a, b) and graph[a][b]["bandwidth"] >= bandwidth:
                continue
            graph.add_edge(a, b, bandwidth=bandwidth, latency=net.link.latency_us / (2 if net.b is None else 1), link=net.link.id)
        self._graph = graph
        # In a maximum spanning tree the path between two vertices is a widest (bottleneck) path.
        self._tree = nx.maximum_spanning_tree(graph, weight="bandwidth") if graph.number_of_edges() else graph

    def route(self, a: str, b: str) -> Route:
        """Bandwidth (widest path) and latency between two devices."""
        if a == b:
            device = self._devices[a]
            return Route(device.spec.memory_bandwidth_gb_s, 0.0, "local", ())
        path = nx.shortest_path(self._tree, a, b)
        edges = [self._tree[u][v] for u, v in zip(path, path[1:])]
        narrowest = min(edges, key=lambda e: e["bandwidth"])
        hops = tuple(e["link"] for e in edges)
        return Route(narrowest["bandwidth"], sum(e["latency"] for e in edges), narrowest["link"], hops)

    def hop_link(self, a: str, b: str) -> str:
        """The link type a pipeline hop from device a to device b is limited by."""
        return self.route(a, b).bottleneck

    def fast_domains(self) -> list[FastDomain]:
        """Per machine, each group of identical devices joined by a tensor-parallel-capable link."""
        out: list[FastDomain] = []
        for node in self.cluster.nodes:
            groups: dict[str, list[Device]] = {}
            for device in node.devices:
                groups.setdefault(device.spec.id, []).append(device)
            for device_type, devices in groups.items():
                if len(devices) > 1 and not node.interconnect.tensor_parallel_ok:
                    for device in devices:
                        out.append(FastDomain(node.name, device_type, (device.id,), "none", 0.0))
                    continue
                bandwidth = _intra_bandwidth(node.interconnect, devices[0])
                out.append(FastDomain(node.name, device_type, tuple(d.id for d in devices), node.interconnect.id, bandwidth))
        return out


def build_topology(cluster: Cluster) -> Topology:
    """The graph view of a cluster."""
    return Topology(cluster)
