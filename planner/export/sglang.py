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
    PortBook,
    address_of,
    address_placeholders,
    machine_slices,
    model_reference,
    require_plan,
    require_vendors,
)
from planner.export.formats import engine_kv_dtype, engine_weight_flags
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


def node_argv(base: list[str], *, nnodes: int, rank: str, head: str, dist_port: int, api_port: int) -> list[str]:
    """One node's command: every node runs the same launch with its --node-rank."""
    argv = list(base)
    if nnodes > 1:
        argv += ["--nnodes", str(nnodes), "--node-rank", rank, "--dist-init-addr", f"{head}:{dist_port}"]
    return argv + ["--host", "0.0.0.0", "--port", str(api_port)]


def check_replica(replica: ReplicaOut) -> None:
    """Refuse what one SGLang launch cannot run."""
    tps = {s.tensor_parallel_size for s in replica.stages}
    if len(tps) > 1:
        raise ExportRefused(f"sglang: replica {replica.index} has stages of tensor-parallel sizes {sorted(tps)}; SGLang "
                            f"takes one --tp-size for the whole launch", field="--to")
    if len({d.type for s in replica.stages for d in s.devices}) > 1:
        raise ExportRefused(f"sglang: replica {replica.index} mixes device models; SGLang does not run one launch over "
                            f"different GPU models", field="--to")


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
    ports = PortBook()
    files: dict[str, str] = {}
    launches: list[Launch] = []
    endpoints: list[tuple[int, str]] = []
    steps: list[str] = []
    for replica in plan.replicas:
        check_replica(replica)
        slices = machine_slices(plan, replica, target, equal=True)
        head = slices[0].machine
        placeholders.update(address_placeholders([head]))
        api = ports.take(head, "api", API_PORT)
        dist = ports.take(head, "rendezvous", DIST_PORT) if len(slices) > 1 else None
        base, env = replica_argv(replica, model_arg, kv, weight_flags)
        for rank, piece in enumerate(slices):
            argv = node_argv(base, nnodes=len(slices), rank=str(rank), head=address_of(head), dist_port=dist or 0, api_port=api)
            role = f"replica {replica.index}" + (f", node-rank {rank} of {len(slices)}" if len(slices) > 1 else "")
            launch = Launch(piece.name, role, tuple(argv), tuple([("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", piece.visible_devices), *env]))
            files[f"replica-{replica.index}/{piece.name}.sh"] = to_script(
                launch, placeholders=placeholders, header=[f"{role}: run on {piece.name}.", f"SGLang {plan.request.engine.version}."])
            launches.append(launch)
        endpoints.append((replica.index, f"{address_of(head)}:{api}"))
        others = ", ".join(f"`replica-{replica.index}/{p.name}.sh` on {p.name}" for p in slices[1:])
        steps.append(f"- Replica {replica.index}: start `replica-{replica.index}/{head.name}.sh` on {head.name}"
                     + (f" and, on the others, {others} (they join at --dist-init-addr)" if others else "")
                     + f"; rank 0 serves `http://{address_of(head)}:{api}`.")
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
