"""Which engine a command plans for: --engine, or the documented rule; and the precision mix that
engine runs (its fallback weights when the model's own format cannot run and none was asked for)."""

from __future__ import annotations

from planner.commands.args import TrainingArgs
from planner.commands.memory import resolve_mix
from planner.errors import InputError
from planner.estimate.engine_choice import choose_engine, engine_order, engines_that_run
from planner.estimate.engine_support import mix_families, runs_on
from planner.estimate.engines.vllm import parse_version
from planner.loaders.engines import find_engine, load_engine_catalog
from planner.schemas.engine import EngineProfile
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.plan import EngineRef
from planner.schemas.precision import PrecisionMix


def _ref(profile: EngineProfile, chosen_by: str, reason: str) -> EngineRef:
    return EngineRef(id=profile.id, name=profile.name, version=profile.version, chosen_by=chosen_by, reason=reason)  # type: ignore[arg-type]


OLDEST_VLLM = (0, 8, 0)  # the first V1 release whose start-up accounting the memory rules follow


def resolve_version(profile: EngineProfile, requested: str | None) -> str:
    """The engine version the plan's figures assume: the profile's, or --engine-version where the
    engine's memory rules are kept by version (vLLM, 0.8 to the profile's)."""
    if requested is None or requested == profile.version:
        return profile.version
    if profile.memory.model == "vllm":
        version = parse_version(requested)
        if OLDEST_VLLM <= version <= parse_version(profile.version):
            return requested
        raise InputError(f"vLLM's memory rules are kept for 0.8.0 to {profile.version}, not {requested}",
                         field="--engine-version")
    raise InputError(f"{profile.name}'s figures are for version {profile.version} only, not {requested}",
                     field="--engine-version")


def _where(profile: EngineProfile) -> str:
    return ", ".join(sorted({f"{w.vendor} {'/'.join(w.kinds)}" for w in profile.runs_on}))


def _refuse(args: TrainingArgs, cluster: Cluster, model: ModelSpec, mix: PrecisionMix, what: str | None,
            profile: EngineProfile | None = None) -> InputError:
    profiles = load_engine_catalog()
    able = engines_that_run(profiles, cluster, model, mix, args.mode)
    if profile is not None and not any(runs_on(profile, d.spec) for d in cluster.devices):
        others = f"; engines that can run this: {', '.join(able)} (--engine)" if able else ""
        return InputError(f"{profile.name} runs on {_where(profile)} devices, none of which this inventory has{others}",
                          field="--engine")
    families = ", ".join(mix_families(model, mix)) + f" weights with a {mix.kv_cache_dtype.id} KV cache"
    hint = f"engines that can: {', '.join(able)} (--engine)" if able else "no engine here runs it; choose other --weights"
    subject = f"{what} does not run" if what else "no engine runs"
    return InputError(f"{subject} {families} on any device of this inventory; {hint}",
                      field="--engine" if args.engine else "--weights")


def resolve_engine(args: TrainingArgs, cluster: Cluster, model: ModelSpec) -> tuple[EngineProfile, PrecisionMix, EngineRef]:
    """The engine, the mix it runs and the plan's record of both, or exit 2 naming the engines that can."""
    profile, mix, ref = _resolve(args, cluster, model)
    version = resolve_version(profile, args.engine_version)
    return profile, mix, ref.model_copy(update={"version": version})


def _resolve(args: TrainingArgs, cluster: Cluster, model: ModelSpec) -> tuple[EngineProfile, PrecisionMix, EngineRef]:
    profiles = load_engine_catalog()
    mix = resolve_mix(args, model)
    if args.engine:
        profile = find_engine(args.engine, kind=args.mode)
        runs = engines_that_run({profile.id: profile}, cluster, model, mix, args.mode)
        if runs:
            return profile, mix, _ref(profile, "option", "--engine")
        if not args.weights and profile.fallback_weights:
            fallback = resolve_mix(args, model, weights=profile.fallback_weights)
            if engines_that_run({profile.id: profile}, cluster, model, fallback, args.mode):
                return profile, fallback, _ref(profile, "option", f"--engine; weights {profile.fallback_weights}, "
                                               f"{profile.name}'s default for a model whose own format it cannot run")
        raise _refuse(args, cluster, model, mix, profile.name, profile)
    profile, reason = choose_engine(profiles, cluster, model, mix, args.mode)
    if profile is not None:
        return profile, mix, _ref(profile, "rule", reason)
    if not args.weights:
        for engine_id in engine_order(cluster, args.mode, mix_families(model, mix))[0]:
            candidate = profiles[engine_id]
            if candidate.fallback_weights:
                fallback = resolve_mix(args, model, weights=candidate.fallback_weights)
                if engines_that_run({candidate.id: candidate}, cluster, model, fallback, args.mode):
                    return candidate, fallback, _ref(candidate, "rule", f"{reason}; {candidate.name} with its default "
                                                     f"weights {candidate.fallback_weights}")
    raise _refuse(args, cluster, model, mix, None)
