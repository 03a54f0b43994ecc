"""The plan as one self-contained HTML page: the request, the summary, memory per device, pictures
and any extra tables (what-if, sweep). No scripts, no external URLs; CSS inline, SVG pictures
inline and PNG ones as data: URIs. Every string from the plan is escaped. Returns text; the CLI
writes the file. Nothing here imports matplotlib: pictures come from report.pictures, which
imports it only when asked to draw.
"""

from __future__ import annotations

import base64
import re
from html import escape
from typing import Any

from planner.errors import InputError
from planner.report.pictures import (
    INSTALL_HINT,
    build_memory_figure,
    build_topology_figure,
    memory_segments,
    pictures_available,
)
from planner.units import to_gib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CAPTIONS = {"memory": "Memory per device", "topology": "Machines, links and the stages on them", "pareto": "Pareto front",
            "sweep": "Sweep: tokens/s per user over users and context"}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 2rem auto;
       max-width: 78rem; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td:first-child { white-space: nowrap; }
table.facts th { width: 14rem; }
.status { color: #555; margin-top: 0; }
.bad { color: #b22222; }
.note { background: #fff8e1; border: 1px solid #f0d98c; padding: 0.5rem 0.8rem; }
figure { margin: 1rem 0; }
figure svg, figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9rem; }
ul.explanation { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85rem; }
"""


def build_report_pictures(plan: dict[str, Any], inventory: dict[str, Any] | None = None) -> dict[str, str]:
    """SVG texts of the memory and topology pictures, by name ("memory", "topology"); {} when
    matplotlib is missing (to_html_report then says how to install it). Raises nothing for that."""
    if not pictures_available():
        return {}
    try:
        out = {}
        if memory_segments(plan):
            out["memory"] = build_memory_figure(plan, "svg").decode("utf-8")
        out["topology"] = build_topology_figure(plan, inventory, "svg").decode("utf-8")
        return out
    except InputError:  # matplotlib found but not importable
        return {}


def to_html_report(plan: dict[str, Any], *, inventory: dict[str, Any] | None = None,
                   pictures: dict[str, str | bytes] | None = None, tables: list[dict[str, Any]] | None = None) -> str:
    """One self-contained page for a plan document (`plan deploy --format json`).

    `inventory` is what `plan inventory show --format json` prints (used for its device and link
    counts). `pictures` maps a name ("memory", "topology", "pareto", "sweep" get captions; any
    other name is its own caption) to SVG text, PNG bytes or a PNG data: URI, shown in that order;
    None or {} shows none (and, when matplotlib is missing, says how to install it). `tables` are
    extra tables, each {"title": str, "columns": [str], "rows": [[cell, ...]]}; cells are text,
    numbers, booleans or None.
    """
    model = plan["request"]["model"]["name"]
    title = f"Plan for {model} on {plan['inventory']['name']}"
    body = [f"<h1>{escape(title)}</h1>", f'<p class="status">{escape(_status(plan))}</p>']
    body += _section("Request", _facts(_request_facts(plan)))
    body += _section("Summary", _facts(_summary_facts(plan, inventory)))
    if plan.get("explanation"):
        body += _section("Why", ['<ul class="explanation">'] + [f"<li>{escape(line)}</li>" for line in plan["explanation"]] + ["</ul>"])
    body += _section("Memory per device", _memory_table(plan))
    body += _section("Pictures", _pictures(pictures or {}))
    for table in tables or []:
        body += _section(str(table["title"]), _table(table["columns"], table["rows"]))
    body += _section("Verification", _verification(plan))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>", "</head>", "<body>", *body,
        f'<p class="status">planner plan document, schema version {escape(str(plan.get("schema_version", "")))}</p>',
        "</body>", "</html>", ""])


def _section(heading: str, content: list[str]) -> list[str]:
    return [f"<h2>{escape(heading)}</h2>", *content] if content else []


def _status(plan: dict[str, Any]) -> str:
    solver = plan["solver"]
    gap = f", gap {solver['gap']:.2%}" if solver.get("gap") else ""
    return f"{plan['mode']} plan; solver {solver['status']}{gap}; {solver['candidates']} layouts considered, {solver['rejected']} rejected"


def _cell(value: Any) -> tuple[str, bool]:
    """A cell's text and whether it is a number (right-aligned)."""
    if value is None:
        return "\u2014", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}", True
    return str(value), False


def _td(value: Any, tag: str = "td") -> str:
    text, number = _cell(value)
    return f'<{tag} class="num">{escape(text)}</{tag}>' if number else f"<{tag}>{escape(text)}</{tag}>"


def _facts(pairs: list[tuple[str, Any]]) -> list[str]:
    rows = [f"<tr><th>{escape(name)}</th>{_td(value)}</tr>" for name, value in pairs]
    return ['<table class="facts">', *rows, "</table>"] if rows else []


def _table(columns: list[Any], rows: list[list[Any]]) -> list[str]:
    head = "<tr>" + "".join(f"<th>{escape(_cell(c)[0])}</th>" for c in columns) + "</tr>"
    return ["<table>", "<thead>", head, "</thead>", "<tbody>",
            *["<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows], "</tbody>", "</table>"]


def _request_facts(plan: dict[str, Any]) -> list[tuple[str, Any]]:
    request = plan["request"]
    model, engine, precision = request["model"], request["engine"], request["precision"]
    facts: list[tuple[str, Any]] = [("model", model["name"] + (f" ({model['hf_repo']})" if model.get("hf_repo") else "")),
                                    ("weights", precision["weights"])]
    if plan["mode"] == "serve":
        facts.append(("KV cache", precision["kv_cache"]))
    facts.append(("engine", f"{engine['name']} {engine['version']} ({engine['reason'] if engine['chosen_by'] != 'option' else '--engine'})"))
    keys = ("users", "request_rate", "context", "prompt_tokens", "output_tokens", "min_tokens_per_s", "max_ttft_s", "objective",
            "global_batch_size", "micro_batch_size", "sequence_length", "optimizer", "zero_stage", "offload", "recompute")
    facts += [(k.replace("_", " "), request[k]) for k in keys if request.get(k) is not None]
    if request.get("lora"):
        facts.append(("LoRA rank", request["lora"]["rank"]))
    return facts


def _summary_facts(plan: dict[str, Any], inventory: dict[str, Any] | None) -> list[tuple[str, Any]]:
    bars = memory_segments(plan)
    facts: list[tuple[str, Any]] = []
    if inventory is not None:
        facts.append(("machines", f"{len(inventory['nodes'])} machines, {len(inventory['devices'])} devices, "
                                  f"{len(inventory.get('links', []))} network links"))
    perf = plan.get("performance")
    if plan["mode"] == "train":
        layout = plan.get("layout")
        if layout is None or perf is None:
            return facts + [("plan", "no training layout fits")]
        return facts + [
            ("layout", f"{layout['device_type']}: tensor {layout['tensor_parallel_size']} x pipeline "
                       f"{layout['pipeline_parallel_size']} x data {layout['data_parallel_size']}, ZeRO-{layout['zero_stage']}, "
                       f"offload {layout['offload']}, recompute {layout['recompute']}"),
            ("devices used", len(bars)), ("unused devices", len(plan.get("unused_devices", []))),
            ("tokens/s", perf["tokens_per_s"]), ("step time (s)", perf["step_time_s"]), ("MFU", f"{perf['mfu']:.0%}"),
            ("bottleneck", perf["bottleneck"])]
    replicas = plan.get("replicas") or []
    if not replicas or perf is None:
        return facts + [("plan", "no plan fits")]
    stages = sorted({len(r["stages"]) for r in replicas})
    tp = sorted({s["tensor_parallel_size"] for r in replicas for s in r["stages"]})
    cap = plan.get("capacity") or {}
    return facts + [
        ("replicas", len(replicas)), ("stages per replica", ", ".join(map(str, stages))),
        ("tensor parallel size", ", ".join(map(str, tp))), ("devices used", len(bars)),
        ("unused devices", len(plan.get("unused_devices", []))),
        ("tokens/s in all", perf["decode_tokens_per_s_total"]),
        ("tokens/s per user", f"{perf['decode_tokens_per_s_per_user']:,.1f} ({perf['tier']})"),
        ("time to first token (s)", perf["time_to_first_token_s"]), ("requests/s", perf["requests_per_s"]),
        ("bottleneck", perf["bottleneck"]), ("users at most", cap.get("max_users")),
        ("KV-cache tokens per replica", cap.get("kv_cache_tokens"))]


def _memory_table(plan: dict[str, Any]) -> list[str]:
    bars = memory_segments(plan)
    if not bars:
        return ["<p>No device holds anything: no plan fits.</p>"]
    parts = list(dict.fromkeys(part for bar in bars for part, _ in bar["segments"]))
    columns = ["device", "type", "holds", "layers", *[f"{p} GiB" for p in parts], "used GiB", "capacity GiB", "used"]
    rows = []
    for bar in bars:
        sizes = dict(bar["segments"])
        first, end = bar["layers"]
        rows.append([bar["device"], bar["type"], bar["holder"], f"{first}-{end - 1}",
                     *[round(to_gib(sizes.get(p, 0)), 2) for p in parts], round(to_gib(bar["total_bytes"]), 2),
                     round(to_gib(bar["capacity_bytes"]), 2), f"{bar['total_bytes'] / max(bar['capacity_bytes'], 1):.0%}"])
    out = ['<p>GiB = 2<sup>30</sup> bytes.</p>', *_table(columns, rows)]
    if plan.get("unused_devices"):
        out.append(f"<p>Unused devices: {escape(', '.join(plan['unused_devices']))}</p>")
    return out


def _pictures(pictures: dict[str, str | bytes]) -> list[str]:
    if not pictures:
        return [f'<p class="note">No pictures: {escape(INSTALL_HINT)}.</p>'] if not pictures_available() else []
    out = []
    for n, (name, picture) in enumerate(pictures.items()):
        caption = CAPTIONS.get(name, name)
        out += ["<figure>", _embed(picture, f"p{n}-", caption), f"<figcaption>{escape(caption)}</figcaption>", "</figure>"]
    return out


def _embed(picture: str | bytes, prefix: str, caption: str) -> str:
    """PNG bytes as a data: URI; SVG as inline markup, its prolog and metadata dropped and its ids
    given `prefix` so two pictures on one page cannot share one."""
    if isinstance(picture, bytes) and picture.startswith(PNG_SIGNATURE):
        return f'<img alt="{escape(caption)}" src="data:image/png;base64,{base64.b64encode(picture).decode("ascii")}">'
    if isinstance(picture, str) and picture.startswith("data:image/png;base64,"):
        return f'<img alt="{escape(caption)}" src="{escape(picture)}">'
    svg = picture.decode("utf-8") if isinstance(picture, bytes) else picture
    start = svg.find("<svg")
    if start < 0:
        raise InputError(f"picture '{caption}' is neither SVG nor PNG", field="pictures")
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg[start:], flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    return re.sub(r'(url\(#|href="#)([^)"]+)', lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)


def _verification(plan: dict[str, Any]) -> list[str]:
    problems = plan.get("verification") or []
    if not problems:
        found = bool(plan.get("replicas") or plan.get("ranks"))
        return ["<p>" + ("Verified: every device fits its memory; layers, users and batches are complete." if found else
                         "Nothing to verify: no plan fits.") + "</p>"]
    return ['<p class="bad">The verifier found problems:</p>', "<ul>", *[f"<li>{escape(p)}</li>" for p in problems], "</ul>"]
