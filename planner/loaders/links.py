"""The built-in catalog of link types (planner/catalog/links.yaml)."""

from __future__ import annotations

import functools
from importlib import resources

from pydantic import ValidationError

from planner.errors import CatalogError, suggest_name
from planner.loaders.yamlfile import parse_yaml_text
from planner.schemas.link import LinkSpec


@functools.cache
def load_link_catalog() -> dict[str, LinkSpec]:
    """Every link type by id."""
    text = resources.files("planner.catalog").joinpath("links.yaml").read_text(encoding="utf-8")
    located = parse_yaml_text(text, "planner/catalog/links.yaml")
    out: dict[str, LinkSpec] = {}
    for index, entry in enumerate(located.data["links"]):
        try:
            link = LinkSpec(**entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise located.error(("links", index, *first["loc"]), first["msg"]) from None
        out[link.id] = link
    return out


def find_link(link_id: str, *, scope: str | None = None, field: str = "interconnect") -> LinkSpec:
    """A link type by id, optionally of one scope, with the closest id suggested on a typo."""
    catalog = load_link_catalog()
    choices = {k: v for k, v in catalog.items() if scope is None or v.scope == scope}
    key = str(link_id).strip().lower()
    if key in choices:
        return choices[key]
    kind = {"intra-node": "intra-node interconnect", "network": "network link"}.get(scope or "", "link type")
    raise CatalogError(
        f"unknown {kind} '{link_id}'; expected one of {', '.join(sorted(choices))}",
        field=field,
        suggestion=suggest_name(key, choices),
    )
