"""The built-in table of storage formats, and turning format names into a PrecisionMix."""

from __future__ import annotations

import functools
import re

from planner.errors import CatalogError, InputError, shorten, suggest_name
from planner.loaders.catalog_files import load_catalog_list, read_catalog_file
from planner.schemas.precision import PrecisionFormat, PrecisionMix

_FILE = "planner/catalog/formats.yaml"
# int<bits>[-g<group>][-asym]: integer formats with any group size (GPTQ/AWQ style, fp16 scales).
_INT_RE = re.compile(r"^int([2-8])(?:-g(\d{1,9}))?(-asym)?$")


@functools.cache
def _load_tables() -> tuple[dict[str, PrecisionFormat], dict[str, PrecisionFormat]]:
    located = read_catalog_file("formats.yaml")
    tables = []
    for section in ("weights", "kv_cache"):
        table: dict[str, PrecisionFormat] = {}
        for fmt in load_catalog_list(located, section, PrecisionFormat):
            for name in (fmt.id, *fmt.aliases):
                table[name.lower()] = fmt
        tables.append(table)
    return tables[0], tables[1]


def load_weight_formats() -> dict[str, PrecisionFormat]:
    """Every weight format by id and alias (lower case)."""
    return _load_tables()[0]


def load_kv_formats() -> dict[str, PrecisionFormat]:
    """Every KV-cache format by id and alias (lower case)."""
    return _load_tables()[1]


MAX_GROUP_SIZE = 2**16


def _integer_format(name: str, field: str) -> PrecisionFormat | None:
    match = _INT_RE.match(name)
    if not match:
        return None
    bits = int(match.group(1))
    group = int(match.group(2)) if match.group(2) else (None if bits == 8 else 128)
    if group is not None and not 1 <= group <= MAX_GROUP_SIZE:
        raise InputError(f"'{name}': the group size must be 1-{MAX_GROUP_SIZE:,}, got {group:,}", field=field)
    asym = bool(match.group(3))
    overhead = f"+ {16 + (bits if asym else 0)}/{group}" if group else "per-channel scale not counted"
    return PrecisionFormat(
        id=name,
        family="int8" if bits == 8 else "int4",
        description=f"{bits}-bit integers, {'asymmetric' if asym else 'symmetric'}, "
        + (f"fp16 scale per group of {group}" if group else "per-channel scale"),
        source=f"GPTQ/AWQ group quantisation (arXiv:2210.17323, arXiv:2306.00978): {bits} {overhead} bits",
        element_bits=bits,
        group_size=group,
        scale_bits=16 if group else 0,
        zero_bits=bits if (asym and group) else 0,
        keep_16bit=("embedding", "lm_head"),
    )


def resolve_weight_format(name: str, *, field: str = "--weights") -> PrecisionFormat:
    """A weight format by name (case-insensitive), including int<b>-g<group>[-asym]."""
    table = load_weight_formats()
    key = name.strip().lower()
    if key in table:
        return table[key]
    parametric = _integer_format(key, field)
    if parametric is not None:
        return parametric
    raise CatalogError(
        f"unknown weight format '{shorten(name)}'; see `plan formats` for the list",
        field=field,
        suggestion=suggest_name(key, table),
    )


def resolve_kv_format(name: str, *, field: str = "--kv-cache") -> PrecisionFormat:
    """A KV-cache format by name (case-insensitive)."""
    table = load_kv_formats()
    key = name.strip().lower()
    if key in table:
        return table[key]
    raise CatalogError(
        f"unknown KV-cache format '{shorten(name)}'; choose one of {', '.join(sorted({f.id for f in table.values()}))}",
        field=field,
        suggestion=suggest_name(key, table),
    )


def build_precision_mix(
    weights: str,
    kv_cache: str = "fp16",
    *,
    embedding: str | None = None,
    lm_head: str | None = None,
    attention: str | None = None,
    dense_mlp: str | None = None,
    experts: str | None = None,
    shared_experts: str | None = None,
) -> PrecisionMix:
    """Resolve format names into a PrecisionMix; every format a mix rule names is included."""
    overrides = {
        "embedding": embedding, "lm_head": lm_head, "attention": attention,
        "dense_mlp": dense_mlp, "experts": experts, "shared_experts": shared_experts,
    }
    resolved = {k: resolve_weight_format(v, field=f"--{k.replace('_', '-')}") for k, v in overrides.items() if v}
    main = resolve_weight_format(weights)
    formats = {f.id: f for f in load_weight_formats().values()}
    for fmt in (main, *resolved.values()):
        formats[fmt.id] = fmt
        for rule in fmt.rules:
            if rule.format not in formats:
                raise InputError(f"format '{fmt.id}' names unknown format '{rule.format}'", file=_FILE)
    return PrecisionMix(weights=main, kv_cache_dtype=resolve_kv_format(kv_cache), formats=formats, **resolved)


def list_formats() -> list[PrecisionFormat]:
    """Each weight format once, in catalog order."""
    seen: dict[str, PrecisionFormat] = {}
    for fmt in load_weight_formats().values():
        seen.setdefault(fmt.id, fmt)
    return list(seen.values())
