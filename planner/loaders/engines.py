"""The built-in engine profiles: one YAML file per engine under planner/catalog/engines/."""

from __future__ import annotations

import functools

from planner.errors import CatalogError, shorten, suggest_name
from planner.loaders.catalog_files import build_catalog_entry, iter_catalog_folder
from planner.schemas.engine import EngineProfile


@functools.cache
def load_engine_catalog() -> dict[str, EngineProfile]:
    """Every engine profile by id."""
    out: dict[str, EngineProfile] = {}
    for file_name, located in iter_catalog_folder("engines"):
        profile = build_catalog_entry(located, EngineProfile)
        if f"{profile.id}.yaml" != file_name:
            raise located.error(("id",), f"id '{profile.id}' does not match the file name")
        out[profile.id] = profile
    return out


def find_engine(name: str, *, kind: str | None = None, field: str = "--engine") -> EngineProfile:
    """An engine profile by id (case-insensitive), of one kind when given."""
    catalog = {k: v for k, v in load_engine_catalog().items() if kind is None or v.kind == kind}
    key = name.strip().lower()
    if key in catalog:
        return catalog[key]
    other = load_engine_catalog().get(key)
    if other is not None:
        kinds = {"serve": "serving", "train": "training"}
        raise CatalogError(f"'{other.id}' is a {kinds[other.kind]} engine; for --mode {kind} use one of "
                           f"{', '.join(sorted(catalog))}", field=field)
    raise CatalogError(f"unknown engine '{shorten(name)}'; expected one of {', '.join(sorted(catalog))}", field=field,
                       suggestion=suggest_name(key, catalog))
