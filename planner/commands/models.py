"""`plan models list` and `plan models show`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from planner.errors import InputError
from planner.estimate.kv_cache import estimate_kv_bytes_per_token
from planner.estimate.parameters import estimate_parameters
from planner.loaders.catalog import find_catalog_entry, load_catalog_model, load_model_catalog
from planner.loaders.formats import resolve_kv_format
from planner.report.table import to_text_table
from planner.schemas.precision import COMPONENTS
from planner.units import to_billions


def run_models_list(family: str | None) -> tuple[list[dict[str, Any]], Callable[[Any], str]]:
    """One row per catalog model, with exact counts."""
    rows = []
    fp16 = resolve_kv_format("fp16")
    for entry_id, (entry, _) in load_model_catalog().items():
        if family and entry.family.lower() != family.lower():
            continue
        model = load_catalog_model(entry_id)
        counts = estimate_parameters(model)
        rows.append({
            "id": entry_id, "name": entry.name, "family": entry.family, "hf_repo": entry.hf_repo,
            "parameters_total": counts.total_parameters, "parameters_active": counts.active_parameters,
            "layers": model.num_layers, "max_context": model.max_context,
            "kv_bytes_per_token_fp16": int(estimate_kv_bytes_per_token(model, fp16)),
        })
    if family and not rows:
        families = sorted({e.family for e, _ in load_model_catalog().values()})
        raise InputError(f"no models in family '{family}'; families: {', '.join(families)}", field="--family")

    def text(data: list[dict[str, Any]]) -> str:
        table = [[r["id"], r["family"], f"{to_billions(r['parameters_total']):,.2f} B",
                  "" if r["parameters_active"] == r["parameters_total"] else f"{to_billions(r['parameters_active']):,.2f} B",
                  r["layers"], f"{r['max_context']:,}", f"{r['kv_bytes_per_token_fp16']:,}"] for r in data]
        return to_text_table(["id", "family", "parameters", "active", "layers", "context", "KV B/token (16-bit)"], table,
                             right=[False, False, True, True, True, True, True]) + f"\n{len(data)} models"
    return rows, text


def run_models_show(name: str) -> tuple[dict[str, Any], Callable[[Any], str]]:
    """Architecture, source and per-component parameters of one catalog model."""
    entry = find_catalog_entry(name)
    model = load_catalog_model(entry.id)
    counts = estimate_parameters(model)
    data = {
        "id": entry.id, "name": entry.name, "family": entry.family, "hf_repo": entry.hf_repo,
        "aliases": list(entry.aliases), "published_parameters": entry.published_parameters,
        "source": entry.source, "notes": entry.notes,
        "spec": model.model_dump(mode="json", exclude={"name", "source"}),
        "parameters": {
            "total": counts.total_parameters, "active": counts.active_parameters,
            "by_component": {c: {"total": counts.total[c], "active": counts.active[c]} for c in COMPONENTS if counts.total[c]},
            "mtp_not_served": counts.mtp_parameters,
        },
        "kv_bytes_per_token_fp16": estimate_kv_bytes_per_token(model, resolve_kv_format("fp16")),
    }

    def text(d: dict[str, Any]) -> str:
        spec = d["spec"]
        lines = [f"{d['name']} ({d['id']}), {d['hf_repo']}", f"Source: {d['source']}"]
        if d["notes"]:
            lines.append(f"Notes: {d['notes']}")
        lines.append(f"Published: {d['published_parameters']}; exact: {d['parameters']['total']:,} total, "
                     f"{d['parameters']['active']:,} active")
        keys = ["architecture", "num_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "max_context", "sliding_window", "dtype"]
        lines.append(to_text_table(["field", "value"], [[k, spec[k]] for k in keys], right=[False, False]))
        if spec["moe"]:
            lines.append("MoE: " + ", ".join(f"{k}={v}" for k, v in spec["moe"].items() if v not in (False, 0, [], ())))
        if spec["mla"]:
            lines.append("MLA: " + ", ".join(f"{k}={v}" for k, v in spec["mla"].items()))
        if spec["layer_types"]:
            sliding = sum(1 for t in spec["layer_types"] if t == "sliding")
            lines.append(f"Layers: {sliding} sliding-window ({spec['sliding_window']} tokens), {len(spec['layer_types']) - sliding} full")
        rows = [[c, f"{v['total']:,}", f"{v['active']:,}"] for c, v in d["parameters"]["by_component"].items()]
        lines.append(to_text_table(["component", "parameters", "active"], rows))
        lines.append(f"KV cache: {d['kv_bytes_per_token_fp16']:,.0f} bytes per token at 16 bits")
        return "\n".join(lines)
    return data, text
