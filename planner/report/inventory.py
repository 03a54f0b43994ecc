"""The `plan inventory show` report."""

from __future__ import annotations

from typing import Any

from planner.report.table import to_text_table
from planner.schemas.inventory import Cluster
from planner.topology import build_topology
from planner.units import to_gib


def to_inventory_dict(cluster: Cluster) -> dict[str, Any]:
    """Devices with memory and bandwidth, links, fast domains and totals."""
    topology = build_topology(cluster)
    devices = [{
        "id": d.id, "node": d.node, "type": d.spec.id, "memory_bytes": d.memory_bytes, "usable_bytes": d.usable_bytes,
        "memory_bandwidth_gb_s": d.spec.memory_bandwidth_gb_s, "fp16_tflops": d.spec.fp16_tflops,
        "unified_memory": d.spec.unified_memory, "price_usd": d.price_usd,
    } for d in cluster.devices]
    nodes = [{"name": n.name, "devices": len(n.devices), "interconnect": n.interconnect.id,
              "interconnect_bandwidth_gb_s": n.interconnect.bandwidth_gb_s} for n in cluster.nodes]
    links = [{"a": link.a, "b": link.b or "switch", "type": link.link.id, "count": link.count,
              "bandwidth_gb_s": link.link.bandwidth_gb_s * link.count, "latency_us": link.link.latency_us}
             for link in cluster.links]
    domains = [{"node": f.node, "type": f.device_type, "devices": list(f.device_ids), "link": f.link,
                "bandwidth_gb_s": f.bandwidth_gb_s} for f in topology.fast_domains()]
    prices = [d.price_usd for d in cluster.devices]
    return {
        "name": cluster.name,
        "units": "bytes; bandwidth in GB/s (10^9 bytes/s)",
        "nodes": nodes,
        "devices": devices,
        "links": links,
        "fast_domains": domains,
        "totals": {
            "nodes": len(cluster.nodes),
            "devices": len(devices),
            "memory_bytes": sum(d["memory_bytes"] for d in devices),
            "usable_bytes": sum(d["usable_bytes"] for d in devices),
            "memory_bandwidth_gb_s": sum(d["memory_bandwidth_gb_s"] for d in devices),
            "price_usd": sum(prices) if prices and all(p is not None for p in prices) else None,
        },
    }


def to_inventory_text(report: dict[str, Any]) -> str:
    """The inventory as tables."""
    lines = [f"Inventory: {report['name']}", ""]
    rows = [[d["id"], d["type"], f"{to_gib(d['memory_bytes']):,.1f}", f"{to_gib(d['usable_bytes']):,.1f}",
             f"{d['memory_bandwidth_gb_s']:,.0f}", f"{d['fp16_tflops']:,.1f}"] for d in report["devices"]]
    if len(rows) > 40:
        rows = rows[:20] + [["...", f"{len(rows) - 40} more", "", "", "", ""]] + rows[-20:]
    lines.append(to_text_table(["device", "type", "memory GiB", "usable GiB", "bandwidth GB/s", "fp16 TFLOPS"], rows,
                               right=[False, False, True, True, True, True]))
    t = report["totals"]
    price = f", {t['price_usd']:,.0f} USD" if t["price_usd"] else ""
    lines.append(f"Total: {t['nodes']} node(s), {t['devices']} device(s), {to_gib(t['memory_bytes']):,.1f} GiB memory, "
                 f"{to_gib(t['usable_bytes']):,.1f} GiB usable, {t['memory_bandwidth_gb_s']:,.0f} GB/s{price}")
    lines.append("")
    nodes = [[n["name"], n["devices"], n["interconnect"], f"{n['interconnect_bandwidth_gb_s']:,.1f}"] for n in report["nodes"]]
    if len(nodes) > 20:
        nodes = nodes[:10] + [["...", "", "", ""]] + nodes[-10:]
    lines.append(to_text_table(["node", "devices", "interconnect", "GB/s per direction"], nodes, right=[False, True, False, True]))
    if report["links"]:
        lines.append("")
        links = [[f"{l['a']} - {l['b']}", l["type"], l["count"], f"{l['bandwidth_gb_s']:,.2f}", f"{l['latency_us']:g}"] for l in report["links"]]
        if len(links) > 20:
            links = links[:10] + [["...", "", "", "", ""]] + links[-10:]
        lines.append(to_text_table(["network link", "type", "count", "GB/s per direction", "latency us"], links,
                                   right=[False, False, True, True, True]))
    lines.append("")
    domains = [[f"{f['node']}", f["type"], len(f["devices"]), f["link"], f"{f['bandwidth_gb_s']:,.1f}"] for f in report["fast_domains"]]
    if len(domains) > 20:
        domains = domains[:10] + [["...", "", "", "", ""]] + domains[-10:]
    lines.append("Fast domains (where tensor parallelism is sensible):")
    lines.append(to_text_table(["node", "type", "devices", "link", "GB/s"], domains, right=[False, False, True, False, True]))
    return "\n".join(lines)
