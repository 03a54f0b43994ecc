"""The one reader of the built-in catalogs (planner/catalog/): YAML files shipped with the package,
each a list of entries under one key (or one entry per file), validated against a schema, with
errors that name the catalog file, line and field."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from planner.loaders.validation import to_input_error
from planner.loaders.yamlfile import Located, parse_yaml_text

T = TypeVar("T", bound=BaseModel)


def read_catalog_file(relative: str) -> Located:
    """One catalog file, parsed (e.g. "links.yaml" or "hardware/amd.yaml")."""
    text = resources.files("planner.catalog").joinpath(relative).read_text(encoding="utf-8")
    return parse_yaml_text(text, f"planner/catalog/{relative}", trusted=True)


def iter_catalog_folder(folder: str) -> Iterator[tuple[str, Located]]:
    """(file name, parsed file) for every YAML file of a catalog folder, in name order."""
    root = resources.files("planner.catalog").joinpath(folder)
    for item in sorted(root.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            yield item.name, read_catalog_file(f"{folder}/{item.name}")


def build_catalog_entry(located: Located, schema: type[T], path: tuple[Any, ...] = ()) -> T:
    """The entry at `path` of a parsed catalog file, validated; keys starting with `_` (YAML
    anchors, annotations) are not part of the entry."""
    data: Any = located.data
    for part in path:
        data = data[part]
    if not isinstance(data, dict):
        raise located.error(path, "expected a mapping of fields")
    try:
        return schema(**{k: v for k, v in data.items() if not str(k).startswith("_")})
    except ValidationError as exc:
        raise to_input_error(exc, located=located, schema=schema, base=path) from None


def load_catalog_list(located: Located, key: str, schema: type[T]) -> list[T]:
    """Every entry of the list under `key` of a parsed catalog file."""
    entries = located.data.get(key) if isinstance(located.data, dict) else None
    if not isinstance(entries, list):
        raise located.error((key,), f"expected a '{key}' list")
    return [build_catalog_entry(located, schema, (key, index)) for index in range(len(entries))]
