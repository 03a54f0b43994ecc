"""Which engine a plan is for when the user names none (docs/engines.md, "Choosing an engine").

Serving: an inventory that mixes Apple Silicon with other devices gets llama.cpp, the one engine
that runs CUDA, ROCm and Metal devices in one replica. Apple Silicon alone gets mlx-lm on one
machine and exo on several. Other GPUs get vLLM, then SGLang, then llama.cpp — llama.cpp first
when the weights are a GGUF format, which is what it is built for. In each list the first engine
that runs the precision mix on at least one device wins (bitsandbytes thus goes to SGLang).
Training: DeepSpeed, then Megatron-LM.
"""

from __future__ import annotations

from planner.estimate.engine_support import check_mix_on_device, mix_families
from planner.schemas.engine import EngineProfile
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix

SERVE_MIXED = ("llama.cpp",)
SERVE_APPLE_ONE = ("mlx-lm", "exo", "llama.cpp")
SERVE_APPLE_MANY = ("exo", "llama.cpp", "mlx-lm")
SERVE_GPUS = ("vllm", "sglang", "llama.cpp")
SERVE_GPUS_GGUF = ("llama.cpp", "sglang", "vllm")
TRAIN = ("deepspeed", "megatron")


def engine_order(cluster: Cluster, mode: str, families: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str]:
    """The engines to try, in order, and why that order."""
    if mode == "train":
        return TRAIN, "training"
    kinds = {d.spec.kind for d in cluster.devices}
    if "apple-silicon" in kinds and kinds - {"apple-silicon"}:
        return SERVE_MIXED, "the inventory mixes Apple Silicon with other devices"
    if kinds == {"apple-silicon"}:
        if len(cluster.nodes) == 1:
            return SERVE_APPLE_ONE, "one Apple Silicon machine"
        return SERVE_APPLE_MANY, "Apple Silicon machines"
    if "gguf" in families:
        return SERVE_GPUS_GGUF, "GPUs with GGUF weights"
    return SERVE_GPUS, "GPUs"


def choose_engine(profiles: dict[str, EngineProfile], cluster: Cluster, model: ModelSpec, mix: PrecisionMix,
                  mode: str) -> tuple[EngineProfile | None, str]:
    """(the engine, the reason), or (None, why none can) when no engine in the order runs the mix."""
    order, why = engine_order(cluster, mode, mix_families(model, mix))
    specs = list({d.spec.id: d.spec for d in cluster.devices}.values())
    tried = []
    for engine_id in order:
        profile = profiles[engine_id]
        if any(check_mix_on_device(profile, model, mix, spec) is None for spec in specs):
            skipped = f" ({'; '.join(tried)})" if tried else ""
            return profile, f"{why}: {profile.name} runs this precision mix here{skipped}"
        tried.append(f"{profiles[engine_id].name} cannot")
    return None, f"{why}: none of {', '.join(profiles[e].name for e in order)} runs this precision mix on these devices"


def engines_that_run(profiles: dict[str, EngineProfile], cluster: Cluster, model: ModelSpec, mix: PrecisionMix,
                     mode: str) -> list[str]:
    """Every engine of the mode that runs the mix on some device of the inventory."""
    specs = list({d.spec.id: d.spec for d in cluster.devices}.values())
    return [p.id for p in profiles.values() if p.kind == mode
            and any(check_mix_on_device(p, model, mix, spec) is None for spec in specs)]
