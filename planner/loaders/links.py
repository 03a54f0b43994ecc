"""The built-in catalog of link types (planner/catalog/links.yaml)."""

from __future__ import annotations

import functools

from planner.errors import CatalogError, shorten, suggest_name
from planner.loaders.catalog_files import load_catalog_list, read_catalog_file
from planner.schemas.link import LinkSpec


@functools.cache
def load_link_catalog() -> dict[str, LinkSpec]:
    """Every link type by id."""
    return {link.id: link for link in load_catalog_list(read_catalog_file("links.yaml"), "links", LinkSpec)}


def find_link(link_id: str, *, scope: str | None = None, field: str = "interconnect") -> LinkSpec:
    """A link type by id, optionally of one scope, with the closest id suggested on a typo."""
    catalog = load_link_catalog()
    choices = {k: v for k, v in catalog.items() if scope is None or v.scope == scope}
    key = str(link_id).strip().lower()
    if key in choices:
        return choices[key]
    kind = {"intra-node": "intra-node interconnect", "network": "network link"}.get(scope or "", "link type")
    raise CatalogError(
        f"unknown {kind} '{shorten(link_id)}'; expected one of {', '.join(sorted(choices))}",
        field=field,
        suggestion=suggest_name(key, choices),
    )
