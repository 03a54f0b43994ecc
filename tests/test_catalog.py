"""Every catalog entry loads, names a source, and agrees with what its publisher states."""

from __future__ import annotations

import re

import pytest

from planner.estimate.parameters import estimate_parameters
from planner.loaders.catalog import find_catalog_entry, load_catalog_model, load_model_catalog
from planner.loaders.formats import build_precision_mix
from planner.estimate.weights import estimate_weight_bytes

CATALOG = sorted(load_model_catalog())


def test_catalog_has_at_least_25_models() -> None:
    assert len(CATALOG) >= 25


@pytest.mark.parametrize("entry_id", CATALOG)
def test_entry_loads_and_counts(entry_id: str) -> None:
    entry = find_catalog_entry(entry_id)
    assert entry.source and entry.hf_repo
    model = load_catalog_model(entry_id)
    counts = estimate_parameters(model)
    assert counts.total_parameters > 0 and 0 < counts.active_parameters <= counts.total_parameters
    estimate_weight_bytes(model, build_precision_mix("q4_k_m"))


def _published_billions(text: str) -> float | None:
    match = re.match(r"^\s*([0-9.]+)\s*B", text)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("entry_id", CATALOG)
def test_exact_count_agrees_with_the_published_figure(entry_id: str) -> None:
    # Publishers round (and some leave out embeddings): within 3% of the stated total.
    entry = find_catalog_entry(entry_id)
    published = _published_billions(entry.published_parameters or "")
    if published is None:
        return
    total = estimate_parameters(load_catalog_model(entry_id)).total_parameters / 1e9
    assert total == pytest.approx(published, rel=0.03), entry.published_parameters


def test_names_resolve_by_id_repo_and_alias_case_insensitively() -> None:
    assert find_catalog_entry("Meta-Llama/Llama-3.1-8B").id == "llama-3.1-8b"
    assert find_catalog_entry("LLAMA-3.1-8B").id == "llama-3.1-8b"
    assert find_catalog_entry("meta-llama/Llama-3.1-8B-Instruct").id == "llama-3.1-8b"


def test_aliases_are_unique() -> None:
    seen: dict[str, str] = {}
    for entry_id, (entry, _) in load_model_catalog().items():
        for name in (entry_id, entry.hf_repo, *entry.aliases):
            assert seen.setdefault(name.lower(), entry_id) == entry_id, name
