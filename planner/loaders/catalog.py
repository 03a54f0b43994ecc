"""The built-in model catalog: one YAML file per model under planner/catalog/models/."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from planner.errors import CatalogError, InputError, suggest_name
from planner.loaders.hf_config import build_model_spec, load_model_config
from planner.loaders.yamlfile import Located, parse_yaml_text
from planner.schemas.catalog import ModelCatalogEntry
from planner.schemas.model import ModelSpec


def _validate(located: Located) -> ModelCatalogEntry:
    try:
        return ModelCatalogEntry(**located.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise located.error(tuple(first["loc"]), first["msg"]) from None
    except TypeError:
        raise located.error((), "expected a mapping of catalog fields") from None


@functools.cache
def load_model_catalog() -> dict[str, tuple[ModelCatalogEntry, Located]]:
    """Every catalog entry by id, with its parsed file for error locations."""
    folder = resources.files("planner.catalog").joinpath("models")
    out: dict[str, tuple[ModelCatalogEntry, Located]] = {}
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yaml"):
            continue
        label = f"planner/catalog/models/{item.name}"
        located = parse_yaml_text(item.read_text(encoding="utf-8"), label)
        entry = _validate(located)
        if f"{entry.id}.yaml" != item.name:
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
            f"unknown model '{name}'; `plan models list` shows the catalog, or pass a config.json path",
            field="--model",
            suggestion=suggest_name(key, [n for n in names if "/" not in n]),
        )
    return load_model_catalog()[names[key]][0]


def load_catalog_model(name: str) -> ModelSpec:
    """The ModelSpec of a catalog model."""
    entry = find_catalog_entry(name)
    located = load_model_catalog()[entry.id][1]
    config_located = Located(entry.config, {k[1:]: v for k, v in located.marks.items() if k[:1] == ("config",)}, located.file)
    return build_model_spec(entry.config, name=entry.id, source=entry.source, located=config_located)


def load_model(name_or_path: str) -> ModelSpec:
    """A model from a catalog name, a config.json file, a folder (with or without safetensors
    shards), a single .safetensors file or a .gguf file."""
    from planner.loaders.checkpoint import is_checkpoint, load_checkpoint_model

    path = Path(name_or_path)
    if is_checkpoint(path):
        return load_checkpoint_model(path)
    if path.suffix in (".gguf", ".safetensors"):
        raise InputError("no such file", file=name_or_path, field="--model")
    if path.suffix == ".json" or path.is_dir() or path.exists():
        return load_model_config(path)
    if "/" in name_or_path and not _names().get(name_or_path.lower()):
        if name_or_path.startswith((".", "/", "~")):
            raise InputError("no such file or folder", file=name_or_path, field="--model")
    return load_catalog_model(name_or_path)
