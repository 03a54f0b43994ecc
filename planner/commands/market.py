"""`plan whatif --list-templates`: the machines a purchase search may choose from, with their prices."""

from __future__ import annotations

from typing import Any

from planner.commands.buy_search import (
    machine_cluster,
    select_templates,
    template_devices,
)
from planner.estimate.cost import estimate_power_w, estimate_purchase_usd
from planner.loaders.market import load_market_catalog, load_market_file
from planner.schemas.market import MarketMachine


def list_templates(market: str | None, patterns: tuple[str, ...]) -> dict[str, Any]:
    """Every template (of `market`, else the built-in one) matching `patterns`, with its prices."""
    templates = select_templates(load_market_file(market) if market else load_market_catalog(), patterns)
    rows = []
    for t in templates:
        devices = template_devices(t)
        purchase, parts, dates = estimate_purchase_usd(t, devices)
        rows.append({
            "id": t.id, "name": t.name, "kind": t.kind, "devices": t.devices,
            "purchase_usd": None if t.hourly else purchase, "purchase_parts": [] if t.hourly else list(parts),
            "usd_per_hour": t.hourly.usd_per_hour if t.hourly else None,
            "power_w": estimate_power_w(t, devices), "dates": [t.hourly.date] if t.hourly else list(dates),
            "source": (t.hourly.source if t.hourly else t.price.source if t.price else "hardware catalog prices"),
        })
    return {"kind": "templates", "market": market or "built-in", "templates": rows}


def to_templates_text(data: dict[str, Any]) -> str:
    """One template per line."""
    table = [["id", "kind", "devices", "purchase USD", "USD/h", "power W", "price date"]]
    for r in data["templates"]:
        table.append([r["id"], r["kind"], r["devices"], "-" if r["purchase_usd"] is None else f"{r['purchase_usd']:,.0f}",
                      "-" if r["usd_per_hour"] is None else f"{r['usd_per_hour']:,.2f}",
                      "-" if r["power_w"] is None else f"{r['power_w']:,.0f}", ", ".join(r["dates"]) or "-"])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [f"Market: {data['market']} ({len(data['templates'])} templates)"]
    for k, row in enumerate(table):
        lines.append("  ".join(c.rjust(w) if 3 <= i <= 5 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_market_machines() -> list[MarketMachine]:
    """Every template of the built-in market that can be bought, as one built machine with its price."""
    out = []
    for t in load_market_catalog():
        if t.hourly is not None:
            continue
        purchase, _, dates = estimate_purchase_usd(t, template_devices(t))
        if purchase is not None:
            out.append(MarketMachine(template_id=t.id, name=t.name, node=machine_cluster(t, 1).nodes[0], price_usd=purchase,
                                     date=max(dates) if dates else "-"))
    return out
