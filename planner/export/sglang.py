"""`plan export --to sglang`: one `python -m sglang.launch_server` per replica (flags of SGLang
0.5.23, sglang/srt/arg_groups/fields/*.py), every machine of a replica running the same command
with its --node-rank and --dist-init-addr pointing at the first (check_server_args:
(tp*pp) % nnodes == 0; node r holds a contiguous block of ranks, entrypoints/engine.py
_calculate_rank_ranges); uneven stages through SGLANG_PP_LAYER_PARTITION (srt/distributed/
utils.py get_pp_indices). Replicas on other machines are separate launches behind
sglang-router: SGLang refuses --dp-size > 1 across nodes."""

from __future__ import annotations

from planner.export.bundle import Bundle, ExportRefused, Launch, to_script
from planner.export.context import (
    ExportContext,
    model_reference,
    require_plan,
    require_vendors,
)
from planner.export.formats import engine_kv_dtype, engine_weight_flags
from planner.export.gpu_server import Server, build_server_launches
from planner.export.runbook import Runbook, placeholder_lines, plan_intro
from planner.export.serving import expectation_lines, layout_rows, replica_layers
from planner.schemas.plan import ReplicaOut, ServePlan

API_PORT = 30000  # launch_server --port default
DIST_PORT = 50000  # the port the engine docs and the LWS example use in --dist-init-addr
ROUTER_PORT = 30080


def replica_argv(replica: ReplicaOut, model_arg: str, kv: str, weight_flags: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """`launch_server` with the replica's layout and settings, and the environment every node sets."""
    e = replica.engine
    if e.kv_cache_memory_bytes is not None:
        raise ExportRefused("sglang sizes its cache by --mem-fraction-static, not a byte figure; plan without "
                            "--kv-cache-memory-bytes", field="--to")
    base = ["python", "-m", "sglang.launch_server", "--model-path", model_arg,
            "--tp-size", str(replica.stages[0].tensor_parallel_size), "--pp-size", str(len(replica.stages)),
            "--context-length", str(e.context_tokens), "--max-running-requests", str(e.max_sequences),
            "--chunked-prefill-size", str(e.batch_tokens), "--page-size", str(e.block_size),
            "--mem-fraction-static", f"{e.memory_fraction:g}", "--kv-cache-dtype", kv, *weight_flags]
    if not e.cuda_graphs:
        base.append("--disable-cuda-graph")
    env = [("SGLANG_PP_LAYER_PARTITION", ",".join(str(n) for n in replica_layers(replica)))] if len(replica.stages) > 1 else []
    return base, env


def node_argv(base: list[str], *, nnodes: int, rank: str, head: str, rendezvous_port: int, api_port: int,
              worker: bool) -> list[str]:
    """One node's command: every node runs the same launch with its --node-rank (only rank 0 serves HTTP)."""
    argv = list(base)
    if nnodes > 1:
        argv += ["--nnodes", str(nnodes), "--node-rank", rank, "--dist-init-addr", f"{head}:{rendezvous_port}"]
    return argv + ["--host", "0.0.0.0", "--port", str(api_port)]


SERVER = Server("sglang", "SGLang", "--tp-size", API_PORT, DIST_PORT, replica_argv, node_argv)


def to_sglang(plan: ServePlan, context: ExportContext) -> Bundle:
    """The SGLang launch bundle of a serving plan."""
    target = "sglang"
    require_plan(plan, target)
    if not isinstance(plan, ServePlan):
        raise ExportRefused("sglang exports serving plans; use --to deepspeed or --to megatron for training", field="--to")
    require_vendors(plan, context, target, ("nvidia", "amd"))
    model_arg, placeholders = model_reference(plan, context)
    weight_flags, requirement = engine_weight_flags("sglang", plan.request.precision.weights, context)
    kv = engine_kv_dtype("sglang", plan.request.precision.kv_cache, weights=plan.request.precision.weights)
    built = build_server_launches(plan, SERVER, model_arg=model_arg, kv=kv, weight_flags=weight_flags,
                                  placeholders=placeholders)
    files, launches, endpoints = built.files, built.launches, built.endpoints
    steps: list[str] = []
    for (replica_index, endpoint), slices in zip(endpoints, built.slices):
        head = slices[0]
        others = ", ".join(f"`replica-{replica_index}/{p.name}.sh` on {p.name}" for p in slices[1:])
        steps.append(f"- Replica {replica_index}: start `replica-{replica_index}/{head.name}.sh` on {head.name}"
                     + (f" and, on the others, {others} (they join at --dist-init-addr)" if others else "")
                     + f"; rank 0 serves `http://{endpoint}`.")
    if len(endpoints) > 1:
        router = ("python", "-m", "sglang_router.launch_router", "--host", "0.0.0.0", "--port", str(ROUTER_PORT),
                  "--worker-urls", *[f"http://{ep}" for _, ep in endpoints])
        first = plan.inventory.machines[0]
        launch = Launch(first.name, "router over every replica", router)
        files["router.sh"] = to_script(launch, placeholders=placeholders, header=["sglang-router: spreads requests over the "
                                                                                  "replicas; run it anywhere that reaches them."])
        launches.append(launch)
        steps.append(f"- Then `router.sh` (pip install sglang-router): it serves :{ROUTER_PORT} and forwards to every replica.")
    book = Runbook(f"SGLang launch: {plan.request.model.name} on {plan.inventory.name}",
                   plan_intro(plan, "sglang", "flags of SGLang 0.5.23 (sglang/srt/arg_groups/fields)"))
    book.add("What runs where", layout_rows(plan))
    book.add("Before you start", [
        f"- Install SGLang {plan.request.engine.version} on every machine, with the model at the same path on each.",
        f"- The model: `{model_arg}`." + (f" {requirement}" if requirement else ""),
        "- Every machine of a replica must reach the first one's --dist-init-addr port (NCCL rendezvous).",
        "", *placeholder_lines(placeholders)])
    book.add("Steps, in order", steps)
    book.add("Ports", [f"- API: {ep} (replica {i})" for i, ep in endpoints]
             + ([f"- Router: {ROUTER_PORT}"] if len(endpoints) > 1 else [])
             + ["- Multi-node replicas: the --dist-init-addr port on the first machine."])
    book.add("Health checks", ["- `curl -fsS http://ADDR:PORT/health` answers 200 once the server is ready.",
                               "- `curl -fsS http://ADDR:PORT/get_model_info` names the model."])
    book.add("How to tell it is up, and that it is the plan", expectation_lines(plan, "sglang"))
    files["README.md"] = book.render()
    return Bundle(target, dict(sorted(files.items())), tuple(launches))
