"""The built-in hardware catalog: planner/catalog/hardware/<family>.yaml, each a list of devices."""

from __future__ import annotations

import functools
from importlib import resources

from pydantic import ValidationError

from planner.errors import CatalogError, suggest_name
from planner.loaders.yamlfile import parse_yaml_text
from planner.schemas.hardware import HardwareSpec


@functools.cache
def load_hardware_catalog() -> dict[str, HardwareSpec]:
    """Every catalog device by id, in file order."""
    folder = resources.files("planner.catalog").joinpath("hardware")
    out: dict[str, HardwareSpec] = {}
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yaml"):
            continue
        label = f"planner/catalog/hardware/{item.name}"
        located = parse_yaml_text(item.read_text(encoding="utf-8"), label)
        devices = located.data.get("devices") if isinstance(located.data, dict) else None
        if not isinstance(devices, list):
            raise located.error((), "expected a mapping with a 'devices' list")
        for index, entry in enumerate(devices):
            if not isinstance(entry, dict):
                raise located.error(("devices", index), "expected a mapping of device fields")
            entry = {k: v for k, v in entry.items() if not k.startswith("_")}  # _-keys hold YAML anchors
            try:
                spec = HardwareSpec(**entry)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise located.error(("devices", index, *first["loc"]), first["msg"]) from None
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
        f"unknown device type '{device_id}'; `plan hardware list` shows the catalog, or use type: custom",
        field=field,
        suggestion=suggest_name(key, catalog),
    )
