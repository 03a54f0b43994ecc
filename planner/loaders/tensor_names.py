"""Which model component, tensor kind and layer a checkpoint tensor name belongs to
(planner/catalog/tensor-names.yaml: safetensors names as transformers writes them, GGUF names as
llama.cpp's converter writes them)."""

from __future__ import annotations

import functools
import re

from planner.loaders.catalog_files import read_catalog_file


@functools.cache
def _patterns(kind: str) -> list[tuple[re.Pattern[str], str, str | None]]:
    rows = read_catalog_file("tensor-names.yaml").data[kind]
    return [(re.compile("^" + r["pattern"].replace("{L}", r"(?P<layer>\d+)") + "$"), r["component"], r.get("kind")) for r in rows]


def classify_tensor(name: str, kind: str) -> tuple[str, str | None, int | None] | None:
    """(component, tensor kind, layer) of a checkpoint tensor name, or None when unknown."""
    for pattern, component, tensor_kind in _patterns(kind):
        match = pattern.match(name)
        if match:
            layer = match.groupdict().get("layer")
            return component, tensor_kind, int(layer) if layer is not None else None
    return None
