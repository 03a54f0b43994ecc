"""Pictures of a plan, a Pareto front and a sweep, as PNG or SVG bytes.

The only module that imports matplotlib (the optional extra `pip install 'planner[pictures]'`), and
only inside functions, so the planner runs without it. Pure functions over the plain dicts the
reports print; nothing here writes a file. The same input gives the same bytes: the bundled DejaVu
font, a fixed SVG hash salt, text kept as text in SVG, and no date or software version in either
format's metadata.
"""

from __future__ import annotations

import importlib.util
import io
import math
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from planner.errors import InputError
from planner.units import to_gib

FORMATS = ("png", "svg")
INSTALL_HINT = "pictures need matplotlib: pip install 'planner[pictures]'"
DPI = 110
STYLE = {"svg.hashsalt": "planner", "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False}
METADATA = {"svg": {"Date": None, "Creator": None, "Type": None, "Format": None}, "png": {"Software": None}}

# Memory parts in stacking order, as the plan document names them; serving plans carry no
# gradients or optimizer states, training plans no KV cache.
MEMORY_PARTS = (("weights_bytes", "weights"), ("kv_cache_bytes", "KV cache"), ("activations_bytes", "activations"),
                ("gradients_bytes", "gradients"), ("optimizer_bytes", "optimizer states"), ("overhead_bytes", "overhead"))
COLOURS = {"weights": "#4c72b0", "KV cache": "#dd8452", "activations": "#55a868", "gradients": "#8172b3",
           "optimizer states": "#937860", "overhead": "#c44e52", "other": "#8c8c8c", "free": "#ececec"}
UNUSED_COLOUR = "#c8c8c8"
MAX_BARS = 48  # a memory picture of more devices shows the first ones and says how many it left out
MAX_LEGEND = 16


def pictures_available() -> bool:
    """Whether matplotlib is installed (found without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _render(draw: Callable[[Any], None], size_in: tuple[float, float], fmt: str, title: str) -> bytes:
    """Draw on a new figure of `size_in` inches under the fixed style; its bytes in `fmt`."""
    if fmt not in FORMATS:
        raise InputError(f"picture format '{fmt}' is not one of {', '.join(FORMATS)}", field="format")
    try:
        import matplotlib
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    if "matplotlib.pyplot" not in sys.modules:  # switching a caller's pyplot backend would close their figures
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size_in, dpi=DPI, layout="constrained")
        draw(fig)
        out = io.BytesIO()
        metadata = dict(METADATA[fmt], Title=title) if fmt == "svg" else METADATA[fmt]
        fig.savefig(out, format=fmt, metadata=metadata)
    return out.getvalue()


def _wrap(title: str, width: int = 80) -> str:
    """A title broken into lines that fit the picture."""
    return textwrap.fill(title, width=width, break_on_hyphens=False)


def _message(fig: Any, text: str) -> None:
    fig.text(0.5, 0.5, text, ha="center", va="center", wrap=True)


def _title(plan: dict[str, Any]) -> str:
    return f"{plan['request']['model']['name']} on {plan['inventory']['name']}"


def _groups(plan: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The replicas of a serving plan or the data-parallel ranks of a training plan, and what to call one."""
    if plan.get("mode") == "train":
        return plan.get("ranks") or [], "rank"
    return plan.get("replicas") or [], "replica"


def plan_holders(plan: dict[str, Any]) -> dict[str, str]:
    """Device id -> the replica (or rank) and stage it holds, "replica 0 stage 1", in plan order."""
    groups, word = _groups(plan)
    return {device["id"]: f"{word} {group['index']} stage {stage['index']}"
            for group in groups for stage in group["stages"] for device in stage["devices"]}


def memory_segments(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Each device the plan uses, in plan order, with its memory as the bar draws it.

    One dict per device: {"device", "type", "holder", "layers": [first, end), "capacity_bytes",
    "total_bytes", "segments": [(part, bytes), ...]}. Parts follow MEMORY_PARTS (only those the
    document records), then "other" for any of total_bytes the parts leave out, then "free", the
    capacity left over; so the segments sum to the capacity, or to the total on an overfull device.
    Serving plans (replicas[]) and training plans (ranks[]) alike; empty when no plan fits.
    """
    groups, word = _groups(plan)
    out = []
    for group in groups:
        for stage in group["stages"]:
            for device in stage["devices"]:
                memory = device["memory"]
                segments = [(label, int(memory[key])) for key, label in MEMORY_PARTS if key in memory]
                counted = sum(size for _, size in segments)
                total, capacity = int(memory["total_bytes"]), int(memory["capacity_bytes"])
                if total > counted:
                    segments.append(("other", total - counted))
                segments.append(("free", max(capacity - max(total, counted), 0)))
                out.append({"device": device["id"], "type": device["type"], "holder": f"{word} {group['index']} stage {stage['index']}",
                            "layers": list(stage["layers"]), "capacity_bytes": capacity, "total_bytes": total,
                            "segments": segments})
    return out


def build_memory_figure(plan: dict[str, Any], fmt: str) -> bytes:
    """A stacked horizontal bar per device (weights / KV cache / activations / ... / overhead / free,
    in GiB), labelled with the device id and what it holds; from `plan deploy --format json`."""
    bars = memory_segments(plan)
    shown = bars[:MAX_BARS]
    title = f"Memory per device: {_title(plan)}"
    if len(bars) > len(shown):
        title += f" (the first {len(shown)} of {len(bars)} devices)"

    def draw(fig: Any) -> None:
        if not shown:
            _message(fig, f"{title}\n\nNo plan fits, so no device holds anything.")
            return
        ax = fig.add_subplot()
        parts_seen: list[str] = []
        for row, bar in enumerate(shown):
            left = 0.0
            for part, size in bar["segments"]:
                if size <= 0:
                    continue
                width = to_gib(size)
                drawn = ax.barh(row, width, left=left, height=0.7, color=COLOURS[part],
                                edgecolor="#999999" if part == "free" else "white", linewidth=0.6)
                drawn.patches[0].set_gid(f"bar{row}-{part.replace(' ', '-')}")
                left += width
                if part not in parts_seen:
                    parts_seen.append(part)
            used, capacity = to_gib(bar["total_bytes"]), to_gib(bar["capacity_bytes"])
            ax.text(left * 1.01, row, f"{used:,.1f} / {capacity:,.1f}", va="center", fontsize=7.5, color="#444444")
        ax.set_yticks(range(len(shown)), [f"{b['device']} ({b['type']})\n{b['holder']}" for b in shown], fontsize=8)
        ax.set_ylim(len(shown) - 0.5, -0.5)
        ax.set_xlim(0, max(to_gib(sum(s for _, s in b["segments"])) for b in shown) * 1.18)
        ax.set_xlabel("GiB (2^30 bytes): used / capacity")
        ax.set_title(_wrap(title), fontsize=10, loc="left")
        order = [p for p in list(COLOURS) if p in parts_seen]
        handles = [_patch(COLOURS[p], "#999999" if p == "free" else "white") for p in order]
        fig.legend(handles, order, loc="outside lower center", ncols=len(order), frameon=False, fontsize=8)

    return _render(draw, (8.5, 1.3 + 0.42 * max(len(shown), 1)), fmt, title)


def _patch(colour: str, edge: str = "white") -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor=edge)


def _holder_colours(plan: dict[str, Any]) -> dict[str, str]:
    """A colour per replica (or rank) from matplotlib's tab10 cycle, lighter for each later stage."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex, to_rgb

    cmap = colormaps["tab10"]
    groups, word = _groups(plan)
    out = {}
    for group in groups:
        base = to_rgb(cmap(group["index"] % 10))
        stages = len(group["stages"])
        for stage in group["stages"]:
            light = 0.6 * stage["index"] / max(stages - 1, 1)
            out[f"{word} {group['index']} stage {stage['index']}"] = to_hex(tuple(c + (1 - c) * light for c in base))
    return out


def _ink(colour: str) -> str:
    """Black or white text, whichever reads on `colour`."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def _inventory_from_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The machines and devices a plan names, for a topology without the inventory (no links, no types of unused devices)."""
    devices: dict[str, dict[str, Any]] = {}
    groups, _ = _groups(plan)
    for group in groups:
        for stage in group["stages"]:
            for d in stage["devices"]:
                devices[d["id"]] = {"id": d["id"], "node": d["node"], "type": d["type"]}
    for name in plan.get("unused_devices", []):
        devices.setdefault(name, {"id": name, "node": name.split("/")[0], "type": ""})
    nodes = [m["name"] for m in plan["inventory"].get("machines", [])]
    nodes += sorted({d["node"] for d in devices.values()} - set(nodes))
    return {"name": plan["inventory"]["name"], "nodes": [{"name": n} for n in nodes],
            "devices": sorted(devices.values(), key=lambda d: (nodes.index(d["node"]), d["id"])), "links": []}


# Topology layout, in inches: a machine is a box of device tiles under a two-line header.
TILE_W, TILE_H, GAP, HEADER, TILES_PER_ROW = 1.0, 0.62, 0.12, 0.5, 4
MAX_WIDTH_IN, LEGEND_W, ROW_GAP = 14.0, 1.9, 0.5


def build_topology_figure(plan: dict[str, Any], inventory: dict[str, Any] | None, fmt: str) -> bytes:
    """The cluster's machines as boxes of device tiles, each tile coloured by the replica (or rank)
    and stage it holds (unused devices grey), the links between machines labelled with their type
    and bandwidth, and a legend.

    `inventory` is what `plan inventory show FILE --format json` prints (report.inventory's
    to_inventory_dict): {"name", "nodes": [{"name", "interconnect", "interconnect_bandwidth_gb_s"}],
    "devices": [{"id", "node", "type"}], "links": [{"a", "b" (a machine or "switch"), "type",
    "count", "bandwidth_gb_s"}]}; other keys are ignored. None draws the machines and devices the
    plan names, without links. Machines with direct links stand on a circle, others in a grid
    under their switch.
    """
    inv = inventory if inventory is not None else _inventory_from_plan(plan)
    holders = plan_holders(plan)
    nodes = [n["name"] for n in inv["nodes"]]
    by_node: dict[str, list[dict[str, Any]]] = {n: [] for n in nodes}
    for d in inv["devices"]:
        by_node.setdefault(d["node"], []).append(d)
    nodes = list(by_node)
    info = {n["name"]: n for n in inv["nodes"]}
    cols = {n: max(min(len(by_node[n]), TILES_PER_ROW), 1) for n in nodes}
    rows = {n: max(math.ceil(len(by_node[n]) / TILES_PER_ROW), 1) for n in nodes}
    box_w = max(cols.values(), default=1) * (TILE_W + GAP) + GAP
    box_h = max(rows.values(), default=1) * (TILE_H + GAP) + GAP + HEADER
    links = [link for link in inv.get("links", []) if link["a"] in by_node and (link["b"] == "switch" or link["b"] in by_node)]
    direct = [link for link in links if link["b"] != "switch"]
    to_switch = [link for link in links if link["b"] == "switch"]
    centres = _circle(nodes, box_w, box_h) if direct else _grid(nodes, box_w, box_h)
    xs = [x for x, _ in centres.values()] or [0.0]
    ys = [y for _, y in centres.values()] or [0.0]
    switch, buses = None, []
    if to_switch and direct:
        switch = (0.0, 0.0)
    elif to_switch:
        # A bus in the gap above each row of machines, joined by a trunk on the left to the switch above them all.
        buses = sorted({y + box_h / 2 + ROW_GAP / 2 for y in ys}, reverse=True)
        switch = ((min(xs) + max(xs)) / 2, buses[0] + 0.7)
    trunk_x = min(xs) - box_w / 2 - ROW_GAP / 2
    x0, x1 = min(xs) - box_w / 2 - 0.3 - (ROW_GAP / 2 if len(buses) > 1 else 0), max(xs) + box_w / 2 + 0.3
    y0, y1 = min(ys) - box_h / 2 - 0.3, max([y + box_h / 2 for y in ys] + [switch[1] + 0.3 if switch else 0.0]) + 0.3
    scale = min(1.0, MAX_WIDTH_IN / (x1 - x0), MAX_WIDTH_IN / (y1 - y0))
    colours = _holder_colours(plan)
    title = f"Topology: {inv['name']}, stages of {plan['request']['model']['name']}"

    def draw(fig: Any) -> None:
        from matplotlib.patches import FancyBboxPatch, Rectangle

        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.set_title(_wrap(title, 70), loc="left", fontsize=10)
        font = max(9 * scale, 3.5)
        for link in direct:
            (ax_, ay), (bx, by) = centres[link["a"]], centres[link["b"]]
            ax.plot([ax_, bx], [ay, by], color="#555555", linewidth=1.4, zorder=1)
            ax.text((ax_ + bx) / 2, (ay + by) / 2, _link_label(link), ha="center", va="center", fontsize=font * 0.8, zorder=4,
                    bbox={"facecolor": "white", "edgecolor": "#bbbbbb", "boxstyle": "round,pad=0.25"})
        if switch is not None:
            line = {"color": "#777777", "linewidth": 0.9, "zorder": 1}
            for link in to_switch:
                cx, cy = centres[link["a"]]
                if buses:
                    ax.plot([cx, cx], [cy, cy + box_h / 2 + ROW_GAP / 2], **line)
                else:
                    ax.plot([cx, switch[0]], [cy, switch[1]], **line)
            for bus in buses:
                row = [x for x, y in centres.values() if abs(y + box_h / 2 + ROW_GAP / 2 - bus) < 1e-9]
                ax.plot([trunk_x if len(buses) > 1 else min(row), max(row)], [bus, bus], **line)
            if len(buses) > 1:
                ax.plot([trunk_x, trunk_x, switch[0]], [buses[-1], switch[1], switch[1]], **line)
            elif buses:
                ax.plot([switch[0], switch[0]], [buses[0], switch[1]], **line)
            counts: dict[str, int] = {}
            for link in to_switch:
                counts[_link_label(link)] = counts.get(_link_label(link), 0) + 1
            kinds = [f"{kind} ({n} machine{'s' if n > 1 else ''})" for kind, n in sorted(counts.items())]
            label = "switch: " + ("; ".join(kinds) if len(kinds) <= 3 else f"{len(kinds)} kinds of link")
            ax.text(*switch, label, ha="center", va="center", fontsize=font * 0.85, zorder=4,
                    bbox={"facecolor": "#f4f4f4", "edgecolor": "#555555", "boxstyle": "round,pad=0.35"})
        for node in nodes:
            cx, cy = centres[node]
            left, top = cx - box_w / 2, cy + box_h / 2
            ax.add_patch(FancyBboxPatch((left, cy - box_h / 2), box_w, box_h, boxstyle="round,pad=0,rounding_size=0.08",
                                        facecolor="#fafafa", edgecolor="#333333", linewidth=1.0, zorder=2))
            n = info.get(node, {})
            link = f"{n['interconnect']}, {n['interconnect_bandwidth_gb_s']:,g} GB/s" if n.get("interconnect") else ""
            ax.text(left + GAP, top - 0.08, node, ha="left", va="top", fontsize=font, fontweight="bold", zorder=3)
            ax.text(left + GAP, top - 0.29, link, ha="left", va="top", fontsize=font * 0.75, color="#555555", zorder=3)
            for i, device in enumerate(by_node[node]):
                tx = left + GAP + (i % TILES_PER_ROW) * (TILE_W + GAP)
                ty = top - HEADER - (i // TILES_PER_ROW + 1) * (TILE_H + GAP) + GAP
                holder = holders.get(device["id"])
                colour = colours[holder] if holder else UNUSED_COLOUR
                tile = Rectangle((tx, ty), TILE_W, TILE_H, facecolor=colour, edgecolor="#333333", linewidth=0.6, zorder=3)
                tile.set_gid(f"device-{node}-{i}")
                ax.add_patch(tile)
                short = device["id"].split("/", 1)[-1]
                where = holder.replace("replica ", "r").replace("rank ", "r").replace("stage ", "s") if holder else "unused"
                ax.text(tx + TILE_W / 2, ty + TILE_H / 2, f"{short}\n{device.get('type', '')}\n{where}", ha="center",
                        va="center", fontsize=font * 0.7, color=_ink(colour), zorder=4, linespacing=1.15)
        shown = list(colours.items())[:MAX_LEGEND]
        handles = [_patch(c, "#333333") for _, c in shown] + [_patch(UNUSED_COLOUR, "#333333")]
        names = [h for h, _ in shown] + ["unused"]
        if len(colours) > len(shown):
            handles.append(_patch("white", "white"))
            names.append(f"... {len(colours) - len(shown)} more")
        fig.legend(handles, names, loc="outside right upper", fontsize=8, frameon=False)

    legend_rows = min(len(colours), MAX_LEGEND) + 2
    size_in = ((x1 - x0) * scale + LEGEND_W, max((y1 - y0) * scale + 0.5, 0.3 + 0.2 * legend_rows))
    return _render(draw, size_in, fmt, title)


def _link_label(link: dict[str, Any]) -> str:
    count = f" x{link['count']}" if link.get("count", 1) != 1 else ""
    return f"{link['type']}{count}, {link['bandwidth_gb_s']:,g} GB/s"


def _grid(nodes: list[str], box_w: float, box_h: float) -> dict[str, tuple[float, float]]:
    """Machine centres in rows of up to eight, first machine top left."""
    per_row = min(max(math.ceil(math.sqrt(len(nodes) * box_h / box_w)), 1), 8)
    return {n: ((i % per_row) * (box_w + ROW_GAP), -(i // per_row) * (box_h + ROW_GAP)) for i, n in enumerate(nodes)}


def _circle(nodes: list[str], box_w: float, box_h: float) -> dict[str, tuple[float, float]]:
    """Machine centres on a circle, first machine on the left, wide enough that neighbours leave room for a link label."""
    if len(nodes) == 1:
        return {nodes[0]: (0.0, 0.0)}
    radius = (max(box_w, box_h) + 1.6) / (2 * math.sin(math.pi / len(nodes)))
    out = {}
    for i, n in enumerate(nodes):
        angle = math.pi - 2 * math.pi * i / len(nodes)
        out[n] = (radius * math.cos(angle), radius * math.sin(angle))
    return out


def build_pareto_figure(points: list[dict[str, Any]], fmt: str) -> bytes:
    """Cost (x) against total tokens/s (y), coloured by tokens/s per user; the front's points joined
    and labelled, dominated points faded. Each point: {"label": str, "cost_usd": float,
    "tokens_per_s": float, "per_user_tokens_per_s": float, "on_front": bool}."""
    title = "Cost against throughput: the Pareto front"
    ordered = sorted(points, key=lambda p: (p["cost_usd"], -p["tokens_per_s"], p["label"]))
    front = [p for p in ordered if p["on_front"]]

    def draw(fig: Any) -> None:
        if not ordered:
            _message(fig, f"{title}\n\nNo configuration meets the targets.")
            return
        from matplotlib.colors import Normalize

        ax = fig.add_subplot()
        speeds = [p["per_user_tokens_per_s"] for p in ordered]
        norm = Normalize(min(speeds), max(speeds) if max(speeds) > min(speeds) else min(speeds) + 1)
        for group, alpha, size, edge in (([p for p in ordered if not p["on_front"]], 0.3, 28, "none"), (front, 1.0, 60, "black")):
            if group:
                dots = ax.scatter([p["cost_usd"] for p in group], [p["tokens_per_s"] for p in group], s=size, alpha=alpha,
                                  c=[p["per_user_tokens_per_s"] for p in group], cmap="viridis", norm=norm, edgecolors=edge,
                                  linewidths=0.8, zorder=3)
        if front:
            ax.plot([p["cost_usd"] for p in front], [p["tokens_per_s"] for p in front], color="#444444", linewidth=1.0, zorder=2)
            for p in front:
                ax.annotate(p["label"], (p["cost_usd"], p["tokens_per_s"]), xytext=(5, 5), textcoords="offset points", fontsize=8)
        costs = [p["cost_usd"] for p in ordered]
        if min(costs) > 0 and max(costs) / min(costs) > 50:
            ax.set_xscale("log")
        ax.set_xlabel("cost (USD)")
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
        ax.set_ylabel("tokens/s in all")
        ax.set_title(_wrap(title + ("" if front else " (no point is marked as on the front)")), fontsize=10, loc="left")
        ax.grid(True, color="#e5e5e5", zorder=0)
        fig.colorbar(dots, ax=ax, label="tokens/s per user").solids.set_alpha(1)

    return _render(draw, (7.5, 4.8), fmt, title)


def build_sweep_figure(sweep: dict[str, Any], fmt: str) -> bytes:
    """A heat-map of tokens/s per user over users (rows) x context (columns), the value written in
    each cell, cells that do not fit hatched and marked with a cross, and each context's largest
    user count under its column. sweep: {"model", "inventory", "rows": [{"users", "context",
    "fits", "per_user_tokens_per_s", "tokens_per_s", "max_users"}]}; rows may also carry "weights"
    and "engine" (as `plan sweep` prints them), all the same: one heat-map per combination."""
    rows = sweep.get("rows", [])
    kinds = sorted({(str(r.get("weights") or ""), str(r.get("engine") or "")) for r in rows})
    if len(kinds) > 1:
        raise InputError(f"a heat-map shows one weight format and engine; the sweep has {len(kinds)} "
                         f"({', '.join('/'.join(k) for k in kinds[:4])}): pass the rows of one", field="sweep")
    users = sorted({r["users"] for r in rows})
    contexts = sorted({r["context"] for r in rows})
    cells: dict[tuple[int, int], dict[str, Any]] = {}
    for r in rows:
        cells.setdefault((r["users"], r["context"]), r)
    kind = ", ".join(k for k in kinds[0] if k) if kinds else ""
    title = f"{sweep.get('model', '')} on {sweep.get('inventory', '')}{f' ({kind})' if kind else ''}: decode tokens/s per user"

    def draw(fig: Any) -> None:
        if not rows:
            _message(fig, f"{title}\n\nThe sweep is empty.")
            return
        import numpy as np
        from matplotlib.patches import Rectangle

        grid = np.full((len(users), len(contexts)), np.nan)
        for (u, c), r in cells.items():
            if r["fits"] and r.get("per_user_tokens_per_s") is not None:
                grid[users.index(u), contexts.index(c)] = r["per_user_tokens_per_s"]
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", origin="lower", aspect="auto")
        values = grid[~np.isnan(grid)]
        middle = (values.min() + values.max()) / 2 if values.size else 0.0
        for i, u in enumerate(users):
            for j, c in enumerate(contexts):
                r = cells.get((u, c))
                if r is None:
                    continue
                if not r["fits"]:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#f2f2f2", edgecolor="#bbbbbb", hatch="///"))
                    ax.text(j, i, "\u2717", ha="center", va="center", fontsize=11, color="#b22222")
                    continue
                speed, total = r.get("per_user_tokens_per_s"), r.get("tokens_per_s")
                text = "fits" if speed is None else f"{speed:,.1f}" + ("" if total is None else f"\n{total:,.0f} in all")
                ink = "black" if speed is not None and speed > middle else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=ink if speed is not None else "black")
        most = {c: max((r["max_users"] for (u, cc), r in cells.items() if cc == c and r.get("max_users") is not None), default=None)
                for c in contexts}
        combo = {(r.get("weights"), r.get("engine")) for r in cells.values()}
        for found in sweep.get("largest_users") or []:  # the sweep's own search for the largest count, where it has one
            if (found.get("weights"), found.get("engine")) in combo and found.get("largest_users") and found.get("context") in most:
                most[found["context"]] = found["largest_users"]
        ax.set_xticks(range(len(contexts)), [f"{c:,}" + ("" if most[c] is None else f"\nup to {most[c]:,} users") for c in contexts],
                      fontsize=8)
        ax.set_yticks(range(len(users)), [f"{u:,}" for u in users], fontsize=8)
        ax.set_xlabel("context (tokens per user)")
        ax.set_ylabel("users")
        ax.set_title(_wrap(title + " (\u2717: does not fit)", 60), fontsize=10, loc="left")
        if values.size:
            fig.colorbar(image, ax=ax, label="tokens/s per user")

    size_in = (min(2.2 + 1.15 * max(len(contexts), 1), 16.0), min(1.6 + 0.55 * max(len(users), 1), 16.0))
    return _render(draw, size_in, fmt, title)
