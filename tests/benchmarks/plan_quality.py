"""Plan quality against the memory-proportional layer split that llama.cpp and exo use by default
(one pipeline over every device, layers in proportion to memory), on the heterogeneous example
inventories, both for llama.cpp (the engine that runs those mixes). Prints predicted total
tokens/s for both. Run: python tests/benchmarks/plan_quality.py"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from planner.candidates.recipes import Recipe, RecipeBuilder  # noqa: E402
from planner.loaders.calibration import load_calibration  # noqa: E402
from planner.loaders.catalog import load_catalog_model  # noqa: E402
from planner.loaders.formats import build_precision_mix  # noqa: E402
from planner.loaders.inventory import load_inventory  # noqa: E402
from planner.loaders.engines import load_engine_catalog  # noqa: E402
from planner.schemas.serving import ServeRequest  # noqa: E402
from planner.solver.solve import solve_candidates  # noqa: E402

CASES = [
    ("homelab", "llama-3.1-70b", "q4_k_m", 1, 8192),
    ("homelab", "llama-3.1-70b", "q4_k_m", 4, 8192),
    ("homelab", "qwen3-32b", "q8_0", 8, 4096),
    ("homelab", "llama-3.1-8b", "f16", 16, 4096),
    ("mixed-gpu-mac", "llama-3.1-70b", "q4_k_m", 1, 8192),
    ("mixed-gpu-mac", "llama-3.1-70b", "q4_k_m", 8, 8192),
    ("mixed-gpu-mac", "qwen2.5-72b", "q8_0", 2, 8192),
    ("mixed-gpu-mac", "llama-3.1-8b", "f16", 16, 4096),
]


def main() -> None:
    print(f"{'inventory':<15}{'model':<15}{'weights':<8}{'users':>6}{'context':>8}{'proportional tok/s':>20}{'planner tok/s':>15}{'gain':>8}")
    for inventory, name, weights, users, context in CASES:
        cluster = load_inventory(ROOT / "inventories" / f"{inventory}.yaml")
        model = load_catalog_model(name)
        mix = build_precision_mix(weights, "fp16")
        request = ServeRequest(users=users, context=context)
        builder = RecipeBuilder(model, mix, request, cluster, load_calibration(), load_engine_catalog()["llama.cpp"])
        baseline = builder.memory_proportional_recipe(users)
        candidates = builder.build()
        result = solve_candidates(candidates, time_limit_s=60)
        ours = sum(candidates.recipes[i].tokens_per_s * n for i, n in result.copies.items())
        base = baseline.tokens_per_s if isinstance(baseline, Recipe) else None
        gain = f"{ours / base - 1:+.0%}" if base else "n/a"
        base_text = f"{base:,.1f}" if base else "does not fit"
        print(f"{inventory:<15}{name:<15}{weights:<8}{users:>6}{context:>8}{base_text:>20}{ours:>15,.1f}{gain:>8}")


if __name__ == "__main__":
    main()
