"""The built-in hardware catalog: planner/catalog/hardware/<family>.yaml, each a list of devices."""

from __future__ import annotations

import functools

from planner.errors import CatalogError, shorten, suggest_name
from planner.loaders.catalog_files import iter_catalog_folder, load_catalog_list
from planner.schemas.hardware import HardwareSpec


@functools.cache
def load_hardware_catalog() -> dict[str, HardwareSpec]:
    """Every catalog device by id, in file order."""
    out: dict[str, HardwareSpec] = {}
    for _, located in iter_catalog_folder("hardware"):
        for index, spec in enumerate(load_catalog_list(located, "devices", HardwareSpec)):
            if spec.id in out:
                raise located.error(("devices", index, "id"), f"duplicate hardware id '{spec.id}'")
            out[spec.id] = spec
    return out


def find_hardware(device_id: str, *, field: str = "type") -> HardwareSpec:
    """A catalog device by id (case-insensitive), with the closest id suggested on a typo."""
    catalog = load_hardware_catalog()
    key = device_id.strip().lower()
    if key in catalog:
        return catalog[key]
    raise CatalogError(
        f"unknown device type '{shorten(device_id)}'; `plan hardware list` shows the catalog, or use type: custom",
        field=field,
        suggestion=suggest_name(key, catalog),
    )
