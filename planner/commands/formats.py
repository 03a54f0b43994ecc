"""`plan formats`, and the --weights lists of the commands that compare formats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from planner.errors import InputError
from planner.loaders.formats import list_formats, load_kv_formats, resolve_weight_format
from planner.report.table import to_text_table


def run_formats() -> tuple[dict[str, Any], Callable[[Any], str]]:
    """Every weight and KV-cache format with its bits per weight and source."""
    weights = [{
        "id": f.id, "bits_per_weight": None if f.is_mix else round(f.bits_per_weight(), 5),
        "mix_of": f.base, "description": f.description, "source": f.source, "aliases": list(f.aliases),
    } for f in list_formats()]
    seen: dict[str, Any] = {}
    for f in load_kv_formats().values():
        seen.setdefault(f.id, f)
    kv = [{
        "id": f.id, "bits_per_value_head_dim_128": round(f.bits_per_weight(head_dim=128), 5),
        "description": f.description, "source": f.source,
    } for f in seen.values()]
    data = {"weights": weights, "kv_cache": kv}

    def text(d: dict[str, Any]) -> str:
        w = [[r["id"], "per tensor (see `plan memory`)" if r["bits_per_weight"] is None else f"{r['bits_per_weight']:.4f}", r["description"]] for r in d["weights"]]
        k = [[r["id"], f"{r['bits_per_value_head_dim_128']:.4f}", r["description"]] for r in d["kv_cache"]]
        return ("Weight formats\n" + to_text_table(["id", "bits/weight", "what"], w, right=[False, True, False])
                + "\n\nKV-cache formats (bits per value, head_dim 128)\n" + to_text_table(["id", "bits", "what"], k, right=[False, True, False]))
    return data, text


def split_weight_list(text: str | None) -> list[str | None]:
    """A --weights list (q4_k_m,q8_0,bf16): each name checked (a typo is exit 2 with the nearest
    name), each once, in order; [None] when none is given (the engine's default)."""
    if not text:
        return [None]
    names = [w.strip() for w in text.split(",")]
    if any(not w for w in names):
        raise InputError(f"'{text}' has an empty format", field="--weights")
    for name in names:
        if name != "checkpoint":
            resolve_weight_format(name)
    return list(dict.fromkeys(names))
