"""The candidate search at scale: within its share of the time limit, saying what it cut."""

from __future__ import annotations

import json
import time

import yaml

from planner.cli.main import main
from tests.conftest import engine, serve_request


def _inventory(tmp_path, kinds: list[str], machines: int) -> str:
    nodes = [{"name": f"m{k}", "count": machines, "interconnect": "pcie-4", "devices": [{"type": kind, "count": 8}]}
             for k, kind in enumerate(kinds)]
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"name": "big", "nodes": nodes, "network": {"default": "infiniband-ndr"}}))
    return str(path)


def test_a_cut_search_says_what_it_cut_and_still_plans(runner, tmp_path) -> None:
    kinds = ["h100-sxm", "a100-sxm-80gb", "l40s", "rtx-4090", "l4", "a10g", "rtx-3090", "rtx-a6000"]
    inventory = _inventory(tmp_path, kinds, 8)
    start = time.perf_counter()
    result = runner.invoke(main, ["deploy", "--inventory", inventory, "--model", "llama-3.1-70b", "--engine", "llama.cpp",
                                  "--weights", "q4_k_m", "--users", "200", "--time-limit", "3", "--format", "json"])
    elapsed = time.perf_counter() - start
    assert result.exit_code in (0, 1), result.output
    plan = json.loads(result.output)
    solver = plan["solver"]
    assert elapsed < 3 + 10  # the limit, plus loading and checking
    if solver["stopped_early"]:
        assert solver["cut"] and all("not tried" in c for c in solver["cut"])
    if plan["replicas"]:
        assert plan["verification"] == []


def test_engines_that_do_not_mix_device_models_get_no_mixed_pipelines() -> None:
    """Llama-3.1-70B in q6_k (58 GB) fits neither the two RTX 3090s nor the RTX 4090 alone: llama.cpp
    mixes them; vLLM, which runs one device model per instance, is not offered the mix."""
    from planner.candidates.recipes import build_candidates
    from planner.loaders.calibration import load_calibration
    from planner.loaders.catalog import load_model
    from planner.loaders.formats import build_precision_mix
    from planner.loaders.inventory import build_cluster
    from planner.loaders.yamlfile import parse_yaml_text

    data = {"name": "box", "nodes": [{"name": "box", "interconnect": "pcie-4", "devices": [
        {"type": "rtx-3090", "count": 2}, {"type": "rtx-4090", "count": 1}]}]}
    cluster = build_cluster(parse_yaml_text(yaml.safe_dump(data), "box.yaml"))
    model = load_model("llama-3.1-70b")
    for engine_id, weights, mixes in (("llama.cpp", "q6_k", True), ("vllm", "int4", False)):
        precision = build_precision_mix(weights, "fp16")
        request = serve_request(model, precision, engine_id, users=1, context=4096)
        candidates = build_candidates(model, precision, request, cluster, load_calibration(), engine(engine_id))
        mixed = [r for r in candidates.recipes if len({s.unit.device_class.spec.id for s in r.stages}) > 1]
        alone = [r for r in candidates.recipes if len({s.unit.device_class.spec.id for s in r.stages}) == 1]
        assert bool(mixed) == mixes, engine_id
        assert not alone or engine_id == "vllm"
