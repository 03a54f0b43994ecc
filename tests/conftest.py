"""Factories for tiny models and access to the reference data in tests/data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from planner.loaders.formats import build_precision_mix
from planner.loaders.hf_config import build_model_spec, load_model_config
from planner.schemas.model import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
# Real config.json files, each with a `_source` key naming the public file it was read from.
REFERENCE_CONFIGS = DATA / "model-configs"


def reference_model(name: str) -> ModelSpec:
    """A model from tests/data/model-configs/<name>.json."""
    return load_model_config(REFERENCE_CONFIGS / f"{name}.json")


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A small Llama-style config.json dict; override any key."""
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 100,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
    }
    config.update(overrides)
    return config


def tiny_model(**overrides: Any) -> ModelSpec:
    """A small ModelSpec built through the config.json path."""
    return build_model_spec(tiny_config(**overrides), name="tiny", source="tests")


def mix(weights: str = "bf16", kv: str = "fp16", **overrides: str):
    """A precision mix by format names."""
    return build_precision_mix(weights, kv, **overrides)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config, indent=2))
    return path


def engine(name: str = "vllm"):
    """An engine profile from the catalog."""
    from planner.loaders.engines import load_engine_catalog

    return load_engine_catalog()[name]


def serve_request(model: ModelSpec, precision, engine_id: str = "vllm", **fields: Any):
    """The typed request a serving plan records, for `model` under the mix `precision`."""
    from planner.assign.identity import build_model_ref, build_precision_out
    from planner.schemas.plan import EngineRef, ServePlanRequest

    profile = engine(engine_id)
    ref = EngineRef(id=profile.id, name=profile.name, version=profile.version, chosen_by="option", reason="test")
    return ServePlanRequest(model=build_model_ref(model), precision=build_precision_out(precision), engine=ref, **fields)


def plan_serving(model: ModelSpec, precision, cluster, request, calibrations=None, time_limit_s: float = 30.0):
    """(candidates, solver result, verified-ready plan) for a serving request, without the CLI."""
    from planner.assign.identity import build_inventory_ref
    from planner.assign.serve import build_serve_plan
    from planner.candidates.recipes import build_candidates
    from planner.loaders.calibration import load_calibration
    from planner.solver.solve import solve_candidates

    calibrations = calibrations or load_calibration()
    candidates = build_candidates(model, precision, request, cluster, calibrations, engine(request.engine.id))
    result = solve_candidates(candidates, time_limit_s=time_limit_s)
    plan = build_serve_plan(candidates, result, request=request, inventory=build_inventory_ref(cluster))
    return candidates, result, plan
