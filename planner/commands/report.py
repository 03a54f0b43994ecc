"""The pictures and the HTML page of a command's answer (--pictures DIR, --report FILE.html):
which pictures each answer has and which tables go beside its plan. The drawing is
planner/report/pictures.py, the page planner/report/html.py; this module only chooses."""

from __future__ import annotations

from typing import Any

from planner.report.html import to_html_report
from planner.report.pictures import (
    build_memory_figure,
    build_pareto_figure,
    build_sweep_figure,
    build_topology_figure,
    memory_segments,
    pictures_available,
)

PICTURE_FORMATS = ("svg", "png")


def _plan_pictures(plan: dict[str, Any] | None, inventory: dict[str, Any] | None, fmt: str) -> dict[str, bytes]:
    if plan is None or not plan.get("replicas") and not plan.get("ranks"):
        return {}
    out = {}
    if memory_segments(plan):
        out["memory"] = build_memory_figure(plan, fmt)
    out["topology"] = build_topology_figure(plan, inventory, fmt)
    return out


def pareto_points(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The purchase answers as points of the Pareto picture."""
    return [{"label": f"{r['configuration']} ({r['weights']})", "cost_usd": r["cost"], "tokens_per_s": r["tokens_per_s"],
             "per_user_tokens_per_s": r["tokens_per_s_per_user"], "on_front": bool(r.get("on_front"))}
            for r in data["configurations"] if r["tokens_per_s"] is not None]


def _sweeps(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """One heat-map per weights and engine of a sweep."""
    combos = list(dict.fromkeys(r.get("combo", 0) for r in data["rows"]))
    out = []
    for combo in combos:
        rows = [r for r in data["rows"] if r.get("combo", 0) == combo]
        weights, engine = rows[0]["weights"], f"{rows[0]['engine']}-{rows[0].get('engine_version') or ''}".rstrip("-")
        name = "sweep" if len(combos) == 1 else f"sweep-{weights}-{engine}".replace("/", "-").replace(" ", "-")
        out.append((name, {**data, "rows": rows,
                           "largest_users": [e for e in data["largest_users"] if e.get("combo", 0) == combo]}))
    return out


def build_answer_pictures(kind: str, data: dict[str, Any], *, plan: dict[str, Any] | None = None,
                          inventory: dict[str, Any] | None = None, fmt: str = "svg") -> dict[str, bytes]:
    """Pictures of an answer by name: the plan's memory and topology, a purchase's Pareto front, a
    sweep's heat-maps."""
    out = _plan_pictures(plan, inventory, fmt)
    if kind == "buy":
        points = pareto_points(data)
        if points:
            out["pareto"] = build_pareto_figure(points, fmt)
    if kind == "sweep":
        for name, part in _sweeps(data):
            out[name] = build_sweep_figure(part, fmt)
    return out


def _tables(kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    if kind == "buy":
        unit = data["cost"]["unit"]
        cost, prices = data["cost"], data["prices"]
        inputs = [["cost basis", f"{cost['basis']} ({unit})"]]
        if cost["basis"] == "tco":
            inputs += [["years", cost["years"]], ["electricity, USD/kWh", cost["usd_per_kwh"]],
                       ["share of rated power drawn", cost["utilization"]], ["hours a year", cost["hours_per_year"]]]
        inputs += [["prices of these answers dated", " to ".join(dict.fromkeys([prices["dated"][0], prices["dated"][-1]]))
                    if prices["dated"] else "-"], ["oldest, months", prices["oldest_months"]], ["market", data["market"]["source"]]]
        inputs += [[f"{t['id']} costs {t['machine_cost']:,}", "; ".join(t["cost_parts"])]
                   for t in {t["id"]: t for r in data["configurations"] for t in r["templates"]}.values()]
        inputs += [[note, ""] for note in data["notes"]]
        not_chosen = [[e["template"], e["reason"]] for e in data["excluded"]][:40]
        return [{"title": f"Cheapest machines ({data['cost']['basis']}, {unit}); {data['proof']['status']} {data['proof']['scope']}",
                 "columns": ["configuration", "weights", "devices", unit, "tokens/s", "tokens/s per user", "TTFT s", "max users",
                             "Pareto front", "verified"],
                 "rows": [[r["configuration"], r["weights"], r["devices"], r["cost"], r["tokens_per_s"], r["tokens_per_s_per_user"],
                           r["time_to_first_token_s"], r["max_users"], bool(r.get("on_front")), r["verified"]]
                          for r in data["configurations"]]},
                {"title": "What the costs are made of", "columns": ["", ""], "rows": inputs},
                {"title": f"Not chosen ({len(data['excluded'])}, the first {len(not_chosen)})", "columns": ["template", "why"],
                 "rows": not_chosen}]
    if kind == "whatif":
        return [{"title": f"What if: {data['model']} on {data['inventory']}" + (f", {' '.join(data['changes'])}" if data["changes"] else ""),
                 "columns": ["scenario", "weights", "fits", "users", "tokens/s", "tokens/s per user", "TTFT s", "max users",
                             "devices used", "cost USD", "change USD", "why not"],
                 "rows": [[r["scenario"], r["weights"], r["fits"], r["users"], r["tokens_per_s"], r["tokens_per_s_per_user"],
                           r["time_to_first_token_s"], r["max_users"], r["devices_used"], r["cost_usd"], r["cost_change_usd"],
                           r["reason"]] for r in data["scenarios"]]}]
    if kind == "sweep":
        return [{"title": f"Sweep: {data['model']} on {data['inventory']}",
                 "columns": ["users", "context", "weights", "engine", "fits", "tokens/s per user", "tokens/s", "max users"],
                 "rows": [[r["users"], r["context"], r["weights"], r["engine"], r["fits"], r["per_user_tokens_per_s"],
                           r["tokens_per_s"], r["max_users"]] for r in data["rows"]]},
                {"title": "Largest users per context", "columns": ["context", "weights", "engine", "largest users", "method"],
                 "rows": [[x["context"], x["weights"], x["engine"], x["largest_users"], x["method"]] for x in data["largest_users"]]}]
    return []


def to_answer_report(kind: str, data: dict[str, Any], *, plan: dict[str, Any], inventory: dict[str, Any] | None = None,
                     plan_label: str | None = None) -> str:
    """One self-contained HTML page: the plan (`plan_label` says which of the answer's it is), its
    pictures and the answer's tables."""
    pictures: dict[str, str | bytes] = {}
    if pictures_available():
        pictures = {k: v.decode("utf-8") for k, v in build_answer_pictures(kind, data, plan=plan, inventory=inventory).items()}
    tables = _tables(kind, data)
    if plan_label:
        tables = [{"title": "The plan on this page", "columns": ["", ""], "rows": [["plan of", plan_label]]}] + tables
    return to_html_report(plan, inventory=inventory, pictures=pictures, tables=tables)
