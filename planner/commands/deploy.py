"""`plan deploy`: read inputs, build candidates, solve, assign, verify, explain, all within the
time limit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from planner.assign.identity import (
    build_inventory_ref,
    build_model_ref,
    build_precision_out,
)
from planner.assign.serve import build_serve_plan
from planner.assign.train import build_train_plan
from planner.candidates.recipes import CandidateSet, build_candidates
from planner.candidates.training import (
    build_training_candidates,
    build_training_workload,
)
from planner.commands.args import DeployArgs
from planner.commands.engine import resolve_engine
from planner.commands.memory import (
    resolve_context,
    resolve_lora,
    resolve_overhead,
    resolve_reserve,
    resolve_training_reserve,
)
from planner.errors import InputError
from planner.estimate.parallelism import (
    check_pipeline_parallel_size,
    check_tensor_parallel_size,
)
from planner.estimate.shards import check_layer_split
from planner.estimate.zero import check_zero_layout
from planner.explain import explain_binding, explain_changes
from planner.limits import MAX_USERS
from planner.loaders.calibration import load_calibration
from planner.loaders.catalog import hf_repo_of, load_model
from planner.loaders.formats import load_kv_formats, load_weight_formats
from planner.loaders.inventory import load_inventory
from planner.loaders.links import load_link_catalog
from planner.loaders.validation import to_input_error
from planner.report.plan import to_plan_dict, to_plan_text
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.plan import (
    ServePlan,
    ServePlanRequest,
    SolveStatus,
    TrainPlan,
    TrainPlanRequest,
)
from planner.solver.solve import solve_candidates
from planner.solver.training import solve_training
from planner.topology import build_topology
from planner.verify import check_serve_plan, check_train_plan

T = TypeVar("T", bound=BaseModel)

BUILD_SHARE = 0.6  # of --time-limit, for building candidate layouts
SOLVE_SHARE = 0.8  # of what is left, for the solver (the rest for verifying and explaining)


@dataclass(frozen=True)
class DeployResult:
    """What `plan deploy` produced: the plan, how to show it, its exit code and where the time went."""

    plan: ServePlan | TrainPlan
    text: Callable[[dict[str, Any]], str]
    exit_code: int  # 0 a verified plan, 1 none
    timings: dict[str, float]

    @property
    def data(self) -> dict[str, Any]:
        return to_plan_dict(self.plan)


def plan_reason(plan: ServePlan, fits: bool) -> str | None:
    """Why a plan has no layout, in one line (its explanation's first), or None when it fits."""
    return None if fits else next((line for line in plan.explanation if line.strip()), "no plan")


def plan_speed_figures(plan: ServePlan, fits: bool) -> dict[str, Any]:
    """The figures a comparison row shows of a plan (None where it does not fit)."""
    performance, capacity = plan.performance, plan.capacity
    return {
        "tokens_per_s": performance.decode_tokens_per_s_total if fits else None,
        "tokens_per_s_per_user": performance.decode_tokens_per_s_per_user if fits else None,
        "time_to_first_token_s": performance.time_to_first_token_s if fits else None,
        "max_users": capacity.max_users if fits else None,
    }


# Request fields whose option is spelled differently.
REQUEST_OPTIONS = {"time_limit_s": "--time-limit", "runtime_reserve_bytes": "--runtime-reserve-gib",
                   "max_sequences": "--max-num-seqs",
                   "overhead_factor": "--overhead", "lora": "--lora-rank", "mixed_precision": "--fp32-training"}


def _typed(schema: type[T], **fields: Any) -> T:
    """A request record, its rules broken reported against the options the user typed."""
    try:
        return schema(**fields)
    except ValidationError as exc:
        raise to_input_error(exc, options=REQUEST_OPTIONS) from None


def _pins(args: DeployArgs, model: ModelSpec) -> dict[str, Any]:
    """The layout the user pinned (-tp, -pp, -dp, --layer-split), each checked against the model."""
    for problem, option in ((check_tensor_parallel_size(model, args.tensor_parallel_size or 1), "--tensor-parallel-size"),
                            (check_pipeline_parallel_size(model, args.pipeline_parallel_size or 1), "--pipeline-parallel-size"),
                            (check_layer_split(model.num_layers, args.layer_split) if args.layer_split else None, "--layer-split")):
        if problem:
            raise InputError(problem, field=option)
    if args.layer_split and args.mode == "train":
        raise InputError("training stages follow the engine's own split; --layer-split applies to serving", field="--layer-split")
    for value, option in ((args.n_cpu_moe, "--n-cpu-moe"), (args.cpu_layers, "--cpu-layers")):
        if value is not None and args.mode == "train":
            raise InputError(f"{option} applies to serving with llama.cpp", field=option)
        if value is not None and value > model.num_layers - (1 if option == "--cpu-layers" else 0):
            raise InputError(f"{model.name} has {model.num_layers} layers; {option} {value} is more than it can offload", field=option)
    if args.n_cpu_moe and model.moe is None:
        raise InputError(f"{model.name} has no routed experts to keep in host memory", field="--n-cpu-moe")
    pins = {"tensor_parallel_size": args.tensor_parallel_size, "pipeline_parallel_size": args.pipeline_parallel_size,
            "data_parallel_size": args.data_parallel_size, "layer_split": args.layer_split}
    if args.mode != "train":
        pins |= {"n_cpu_moe": args.n_cpu_moe, "cpu_layers": args.cpu_layers}
    return pins


def _check_prices(cluster: Cluster) -> None:
    unpriced = sorted({d.spec.id for d in cluster.devices if d.price_usd is None})
    if unpriced:
        raise InputError(f"--objective cost needs a price for every device; {', '.join(unpriced[:6])} "
                         f"{'has' if len(unpriced) == 1 else 'have'} none (add price_usd to the inventory)", field="--objective")


def _market_machines() -> list:
    # The purchase market imports this module, so it is imported when first needed.
    from planner.commands.market import build_market_machines

    return build_market_machines()


def load_cluster(args: DeployArgs) -> Cluster:
    """The machines an inventory file, or a --gpus/--nodes shorthand, describes."""
    if args.inventory is not None:
        return load_inventory(args.inventory)
    from planner.loaders.shorthand import build_shorthand_cluster

    return build_shorthand_cluster(gpus=args.gpus, nodes=args.nodes, interconnect=args.interconnect, network=args.network)


@dataclass(frozen=True)
class ServingSetup:
    """What every serving plan of one request on one cluster shares: the engine and the mix it
    runs, the speed calibration, the topology and the request's fields; `candidates` builds the
    layouts for a number of users."""

    args: DeployArgs
    cluster: Cluster
    model: ModelSpec
    engine: Any
    mix: Any
    engine_ref: Any
    calibrations: Any
    topology: Any
    context: int

    def request(self, users: int) -> ServePlanRequest:
        args, model = self.args, self.model
        return _typed(ServePlanRequest,
            model=build_model_ref(model, hf_repo_of(model)), precision=build_precision_out(self.mix), engine=self.engine_ref,
            users=users, request_rate=args.request_rate, context=self.context, prompt_tokens=args.prompt_tokens,
            output_tokens=args.output_tokens, prefill_chunk=args.prefill_chunk, max_sequences=args.max_sequences,
            min_tokens_per_s=args.min_tokens_per_s, max_ttft_s=args.max_ttft, objective=args.objective,
            gpu_memory_utilization=args.gpu_memory_utilization, kv_cache_memory_bytes=args.kv_cache_memory_bytes,
            enforce_eager=args.enforce_eager, block_size=args.block_size, overhead_factor=resolve_overhead(args, exact=True),
            runtime_reserve_bytes=resolve_reserve(args), time_limit_s=args.time_limit, **_pins(args, model),
        )

    def candidates(self, users: int, deadline: float, *, replicas_elsewhere: bool = False) -> tuple[ServePlanRequest, CandidateSet]:
        request = self.request(users)
        return request, build_candidates(self.model, self.mix, request, self.cluster, self.calibrations, self.engine,
                                         self.topology, deadline=deadline, replicas_elsewhere=replicas_elsewhere)


def prepare_serving(args: DeployArgs, cluster: Cluster, model: ModelSpec | None = None) -> ServingSetup:
    """The engine, mix, calibration and topology of a serving request on `cluster` (exit 2 when no
    engine runs the request there)."""
    model = model or load_model(args.model)
    context = _resolve_serve_context(args, model)
    engine, mix, engine_ref = resolve_engine(args, cluster, model)
    return ServingSetup(args, cluster, model, engine, mix, engine_ref, load_calibration(engine.speed.speed_class),
                        build_topology(cluster), context)


def run_deploy(args: DeployArgs, cluster: Cluster | None = None, progress: Callable[[str], None] | None = None,
               replicas_elsewhere: bool = False) -> DeployResult:
    """Plan the request within args.time_limit seconds (on `cluster` when given, else on the
    machines the arguments name); each step is reported to `progress` when given. With
    `replicas_elsewhere`, replicas may serve any even split of the users (a purchase that mixes
    machines is re-planned with the splits it was chosen with)."""
    say = progress or (lambda text: None)
    start = time.perf_counter()
    deadline = start + args.time_limit
    cluster = cluster if cluster is not None else load_cluster(args)
    model = load_model(args.model)
    if args.mode == "train":
        return _run_train(args, cluster, model, start, deadline)
    if "users" in args.explicit and args.request_rate is not None:
        raise InputError("give --users (requests in flight) or --request-rate (requests per second), not both",
                         field="--request-rate")
    if args.objective == "cost":
        _check_prices(cluster)
    setup = prepare_serving(args, cluster, model)
    engine, mix, calibrations, topology = setup.engine, setup.mix, setup.calibrations, setup.topology

    def attempt(users: int, until: float) -> _Attempt:
        began = time.perf_counter()
        # The search for layouts may take part of the time; the solver, the checks and any
        # explanation get the rest.
        say(f"building layouts for {users:,} user(s) on {len(cluster.devices):,} devices")
        request, candidates = setup.candidates(users, began + BUILD_SHARE * (until - began), replicas_elsewhere=replicas_elsewhere)
        built = time.perf_counter()
        say(f"{len(candidates.recipes):,} layouts kept, {len(candidates.rejections):,} rejected, in {built - began:.2f} s"
            + (" (cut short by the time limit)" if candidates.stopped_early else ""))
        result = solve_candidates(candidates, time_limit_s=max(0.0, SOLVE_SHARE * (until - built)), progress=progress)
        if candidates.stopped_early and result.status == SolveStatus.INFEASIBLE:
            result = replace(result, status=SolveStatus.TIMED_OUT, copies={})  # not a proof: the search was cut short
        solved = time.perf_counter()
        plan = build_serve_plan(candidates, result, request=request, inventory=build_inventory_ref(cluster))
        return _Attempt(request, candidates, result, plan, built - began, solved - built)

    rate_notes: list[str] = []
    if args.request_rate is None:
        chosen = attempt(args.users, deadline)
    else:
        chosen, rate_notes = _search_rate(args.request_rate, attempt, start, deadline)
    request, candidates, result, plan = chosen.request, chosen.candidates, chosen.result, chosen.plan
    solved = time.perf_counter()
    say("verifying the plan")
    problems = check_serve_plan(plan, model, mix, cluster, calibrations, topology, engine)
    explanation: list[str] = list(rate_notes)
    if result.status == SolveStatus.INFEASIBLE:
        say("no plan: re-planning the smallest changes that would fit")
        explanation += explain_binding(candidates)
        changes = explain_changes(
            model, mix, request, cluster, calibrations, engine, weight_formats=load_weight_formats(), kv_formats=load_kv_formats(),
            market=_market_machines(), links=load_link_catalog(), deadline=deadline,
        )
        if changes:
            explanation.append("Smallest changes that would fit (each re-planned):")
            explanation += [f"  - {c}" for c in changes]
    elif result.status == SolveStatus.TIMED_OUT:
        explanation.append(f"The time limit ({args.time_limit:g} s) came before any plan; this is not a proof that none "
                           f"exists. Try a larger --time-limit.")
    plan = plan.model_copy(update={"verification": problems, "explanation": explanation})
    code = 0 if result.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE) and not problems else 1
    end = time.perf_counter()
    return DeployResult(plan, to_plan_text, code, {"candidates_s": chosen.candidates_s, "solver_s": chosen.solver_s,
                                                   "verify_and_explain_s": end - solved, "total_s": end - start})


@dataclass(frozen=True)
class _Attempt:
    """One plan for one number of users."""

    request: ServePlanRequest
    candidates: Any
    result: Any
    plan: ServePlan
    candidates_s: float
    solver_s: float

    @property
    def found(self) -> bool:
        return self.result.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)

    @property
    def rate(self) -> float:
        return self.plan.performance.requests_per_s if self.plan.performance else 0.0


def _resolve_serve_context(args: DeployArgs, model: ModelSpec) -> int:
    """The context: as given, else long enough for the prompt and output asked for, else the default."""
    if args.context is None and args.prompt_tokens and args.output_tokens:
        context = resolve_context(args.prompt_tokens + args.output_tokens, model, "--output-tokens")
    else:
        context = resolve_context(args.context, model)
    if args.prompt_tokens and args.prompt_tokens > context:
        raise InputError(f"a {args.prompt_tokens:,}-token prompt does not fit a {context:,}-token context", field="--prompt-tokens")
    if args.output_tokens and (args.prompt_tokens or 1) + args.output_tokens > context:
        raise InputError(f"a {args.prompt_tokens or 1:,}-token prompt and {args.output_tokens:,} output tokens do not fit a "
                         f"{context:,}-token context", field="--output-tokens")
    return context


RATE_PROBE_SHARE = 0.25  # of the time left, for each plan tried while searching the users a rate needs


def _search_rate(rate: float, attempt: Callable[[int, float], _Attempt], start: float,
                 deadline: float) -> tuple[_Attempt, list[str]]:
    """The fewest users in flight whose plan finishes `rate` requests per second: one user, a
    proportional guess, doubling until the rate is met or no plan exists, then halving the gap.
    Each plan is the solver's own for that many users, so queueing and prefill competition at
    that load are in its figures."""
    def probe(users: int) -> _Attempt:
        now = time.perf_counter()
        return attempt(users, now + max(0.05, RATE_PROBE_SHARE * (deadline - now)))

    tried: dict[int, _Attempt] = {}

    def run(users: int) -> _Attempt:
        if users not in tried:
            tried[users] = probe(users)
        return tried[users]

    def meets(users: int) -> bool:
        found = run(users)
        return found.found and found.rate >= rate

    low = run(1)
    if not low.found:
        return low, [f"--request-rate {rate:g}: no plan serves even one request at a time"]
    if low.rate >= rate:
        return low, [f"--request-rate {rate:g}: one request in flight finishes {low.rate:.3g} per second"]
    bad, good, ceiling = 1, None, None  # bad: a plan, too slow; ceiling: no plan
    users = min(MAX_USERS, max(2, math.ceil(rate / low.rate)))
    while time.perf_counter() < deadline:
        if meets(users):
            good = users
            break
        if not run(users).found:
            ceiling = users
            break
        if users == MAX_USERS:
            break
        bad, users = users, min(MAX_USERS, users * 2)
    if good is None and ceiling is not None:
        # The most users some plan holds lies between `bad` and `ceiling`; the rate may be met there.
        while ceiling - bad > 1 and time.perf_counter() < deadline:
            middle = (bad + ceiling) // 2
            if meets(middle):
                good = middle
                break
            if run(middle).found:
                bad = middle
            else:
                ceiling = middle
    if good is None:
        best = max((a for a in tried.values() if a.found), key=lambda a: (a.rate, -a.request.users))
        why = (f"--request-rate {rate:g}: the most this inventory sustains is {best.rate:.3g} requests per second "
               f"({best.request.users} in flight)")
        failed = tried[ceiling] if ceiling is not None else tried[max(tried)]
        return failed, [why]
    while good - bad > 1 and time.perf_counter() < deadline:
        middle = (good + bad) // 2
        if meets(middle):
            good = middle
        else:
            bad = middle
    chosen = tried[good]
    return chosen, [f"--request-rate {rate:g}: {good} requests in flight (Little's law at this plan's latency) finish "
                    f"{chosen.rate:.3g} per second"]


def _run_train(args: DeployArgs, cluster: Cluster, model: ModelSpec, start: float, deadline: float) -> DeployResult:
    """Training: choose tp x pp x dp, ZeRO stage, offload and recomputation together."""
    sequence = resolve_context(args.sequence_length or args.context, model, "--sequence-length")
    if args.global_batch_size % args.micro_batch_size:
        raise InputError(f"global batch {args.global_batch_size} is not a multiple of micro-batch {args.micro_batch_size}",
                         field="--global-batch-size")
    if args.zero_stage != "auto" and args.offload != "auto":
        problem = check_zero_layout(int(args.zero_stage), 2, args.offload)
        if problem:
            raise InputError(problem, field="--offload")
    engine, mix, engine_ref = resolve_engine(args, cluster, model)
    request = _typed(TrainPlanRequest,
        model=build_model_ref(model, hf_repo_of(model)), precision=build_precision_out(mix), engine=engine_ref,
        global_batch_size=args.global_batch_size,
        micro_batch_size=args.micro_batch_size, sequence_length=sequence, optimizer=args.optimizer,
        mixed_precision=not args.fp32_training, recompute=args.recompute, zero_stage=args.zero_stage, offload=args.offload,
        lora=resolve_lora(args), overhead_factor=resolve_overhead(args, exact=True), runtime_reserve_bytes=resolve_training_reserve(args),
        time_limit_s=args.time_limit, **{k: v for k, v in _pins(args, model).items() if k != "layer_split"},
    )
    calibrations = load_calibration(engine.speed.speed_class)
    topology = build_topology(cluster)
    candidates = build_training_candidates(model, mix, request, cluster, calibrations, topology, engine, deadline=deadline)
    built = time.perf_counter()
    choice = solve_training(candidates, time_limit_s=max(0.001, deadline - built))
    if candidates.stopped_early and choice.index is None:
        choice = replace(choice, status=SolveStatus.TIMED_OUT)
    solved = time.perf_counter()
    plan = build_train_plan(candidates, choice, cluster, request=request, inventory=build_inventory_ref(cluster))
    problems: list[str] = []
    explanation: list[str] = []
    if plan.layout is not None:
        workload = build_training_workload(request, tp=plan.layout.tensor_parallel_size, zero_stage=plan.layout.zero_stage,
                                           offload=plan.layout.offload, recompute=plan.layout.recompute)
        problems = check_train_plan(plan, model, mix, workload, cluster, engine)
    elif candidates.stopped_early:
        explanation = [f"The time limit ({args.time_limit:g} s) came before any training layout was found; this is not "
                       f"a proof that none exists. Try a larger --time-limit."]
    else:
        seen = list(dict.fromkeys(candidates.rejections))
        explanation = [f"No training layout fits: {len(candidates.rejections)} were rejected, for example:"]
        explanation += [f"  - {r}" for r in seen[:4]]
        explanation.append("Try --qlora or --lora-rank, a smaller --micro-batch-size or --sequence-length, "
                           "--recompute full, or more devices.")
    plan = plan.model_copy(update={"verification": problems, "explanation": explanation})
    code = 0 if plan.layout is not None and not problems else 1
    end = time.perf_counter()
    return DeployResult(plan, to_plan_text, code, {"candidates_s": built - start, "solver_s": solved - built,
                                                   "verify_and_explain_s": end - solved, "total_s": end - start})
