"""The built-in model catalog: one YAML file per model under planner/catalog/models/."""

from __future__ import annotations

import functools
from pathlib import Path

from planner.errors import CatalogError, InputError, shorten, suggest_name
from planner.limits import MAX_PATH_BYTES
from planner.loaders.catalog_files import build_catalog_entry, iter_catalog_folder
from planner.loaders.files import probe
from planner.loaders.hf_config import build_model_spec, load_model_config
from planner.loaders.yamlfile import Located
from planner.schemas.catalog import ModelCatalogEntry
from planner.schemas.model import ModelSpec


@functools.cache
def load_model_catalog() -> dict[str, tuple[ModelCatalogEntry, Located]]:
    """Every catalog entry by id, with its parsed file for error locations."""
    out: dict[str, tuple[ModelCatalogEntry, Located]] = {}
    for file_name, located in iter_catalog_folder("models"):
        entry = build_catalog_entry(located, ModelCatalogEntry)
        if f"{entry.id}.yaml" != file_name:
            raise located.error(("id",), f"id '{entry.id}' does not match the file name")
        out[entry.id] = (entry, located)
    return out


def _names() -> dict[str, str]:
    names: dict[str, str] = {}
    for entry_id, (entry, _) in load_model_catalog().items():
        for name in (entry_id, entry.hf_repo, *entry.aliases):
            names[name.lower()] = entry_id
    return names


def find_catalog_entry(name: str) -> ModelCatalogEntry:
    """A catalog entry by id, Hugging Face repo id or alias (case-insensitive)."""
    names = _names()
    key = name.strip().lower()
    if key not in names:
        raise CatalogError(
            f"unknown model '{shorten(name)}'; `plan models list` shows the catalog, or pass a config.json path",
            field="--model",
            suggestion=suggest_name(key, [n for n in names if "/" not in n]),
        )
    return load_model_catalog()[names[key]][0]


def hf_repo_of(model: ModelSpec) -> str | None:
    """The Hugging Face repository of a catalog model (None for a config or checkpoint)."""
    return find_catalog_entry(model.name).hf_repo if model.origin == "catalog" else None


def load_catalog_model(name: str) -> ModelSpec:
    """The ModelSpec of a catalog model."""
    entry = find_catalog_entry(name)
    located = load_model_catalog()[entry.id][1]
    config_located = Located(entry.config, {k[1:]: v for k, v in located.marks.items() if k[:1] == ("config",)}, located.file)
    return build_model_spec(entry.config, name=entry.id, source=entry.source, located=config_located, origin="catalog")


def load_model(name_or_path: str) -> ModelSpec:
    """A model from a catalog name, a config.json file, a folder (with or without safetensors
    shards), a single .safetensors file or a .gguf file."""
    from planner.loaders.checkpoint import is_checkpoint, load_checkpoint_model

    if not name_or_path.strip():
        raise InputError("expected a catalog name or a path, got an empty string", field="--model")
    if len(name_or_path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise InputError(f"longer than {MAX_PATH_BYTES:,} bytes: neither a catalog name nor a usable path", field="--model")
    path = Path(name_or_path)
    exists = probe(path) is not None
    if exists and is_checkpoint(path):
        return load_checkpoint_model(path)
    if path.suffix in (".gguf", ".safetensors", ".json") and not exists:
        raise InputError("no such file", file=name_or_path, field="--model")
    if exists:
        return load_model_config(path)
    if name_or_path.startswith((".", "/", "~")):
        raise InputError("no such file or folder", file=name_or_path, field="--model")
    return load_catalog_model(name_or_path)
