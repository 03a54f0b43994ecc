"""`plan export --to vllm`: one `vllm serve` per replica (flags of vLLM 0.33.0,
vllm/engine/arg_utils.py and vllm/entrypoints/common/cli_args.py), spread over machines with
--nnodes/--node-rank/--master-addr and --headless on the others (docs/serving/
parallelism_scaling.md, "Running vLLM with MultiProcessing"); uneven stages through
VLLM_PP_LAYER_PARTITION, identical on every node (vllm/distributed/utils.py get_pp_indices).
Replicas are separate servers behind a load balancer: vLLM's data-parallel mode would shard a
MoE model's experts over the whole group (docs/serving/data_parallel_deployment.md), which is not
the plan's full copy per replica."""

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
from planner.export.serving import balancer_files, expectation_lines, layout_rows, replica_layers
from planner.schemas.plan import ReplicaOut, ServePlan

API_PORT = 8000  # vllm serve --port default
MASTER_PORT = 29501  # --master-port default (vllm/config/parallel.py)


def replica_argv(replica: ReplicaOut, model_arg: str, kv: str, weight_flags: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """`vllm serve` with the replica's layout and settings, and the environment every node sets."""
    e = replica.engine
    base = ["vllm", "serve", model_arg, "--tensor-parallel-size", str(replica.stages[0].tensor_parallel_size),
            "--pipeline-parallel-size", str(len(replica.stages)),
            "--max-model-len", str(e.context_tokens), "--max-num-seqs", str(e.max_sequences),
            "--max-num-batched-tokens", str(e.batch_tokens), "--block-size", str(e.block_size)]
    if e.kv_cache_memory_bytes is not None:
        base += ["--kv-cache-memory-bytes", str(e.kv_cache_memory_bytes)]
    else:
        base += ["--gpu-memory-utilization", f"{e.memory_fraction:g}"]
    base += ["--kv-cache-dtype", kv, *weight_flags]
    if not e.cuda_graphs:
        base.append("--enforce-eager")
    env = [("VLLM_PP_LAYER_PARTITION", ",".join(str(n) for n in replica_layers(replica)))] if len(replica.stages) > 1 else []
    return base, env


def node_argv(base: list[str], *, nnodes: int, rank: str, head: str, master_port: int, api_port: int,
              headless: bool) -> list[str]:
    """One node's command: the multi-node flags, and the API on the head (--headless on the others)."""
    argv = list(base)
    if nnodes > 1:
        argv += ["--nnodes", str(nnodes), "--node-rank", rank, "--master-addr", head, "--master-port", str(master_port)]
    return argv + (["--headless"] if headless else ["--host", "0.0.0.0", "--port", str(api_port)])


def check_replica(replica: ReplicaOut) -> None:
    """Refuse what one vLLM instance cannot run."""
    tps = {s.tensor_parallel_size for s in replica.stages}
    if len(tps) > 1:
        raise ExportRefused(f"vllm: replica {replica.index} has stages of tensor-parallel sizes {sorted(tps)}; vLLM takes "
                            f"one --tensor-parallel-size for every stage", field="--to")
    if len({d.type for s in replica.stages for d in s.devices}) > 1:
        raise ExportRefused(f"vllm: replica {replica.index} mixes device models; vLLM does not run one instance over "
                            f"different GPU models", field="--to")


def to_vllm(plan: ServePlan, context: ExportContext) -> Bundle:
    """The vLLM launch bundle of a serving plan."""
    target = "vllm"
    require_plan(plan, target)
    if not isinstance(plan, ServePlan):
        raise ExportRefused("vllm exports serving plans; use --to deepspeed or --to megatron for training", field="--to")
    require_vendors(plan, context, target, ("nvidia", "amd"))
    types = {d.type for r in plan.replicas for s in r.stages for d in s.devices}
    model_arg, placeholders = model_reference(plan, context)
    weight_flags, requirement = engine_weight_flags("vllm", plan.request.precision.weights, context)
    kv = engine_kv_dtype("vllm", plan.request.precision.kv_cache)
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
        master = ports.take(head, "rendezvous", MASTER_PORT) if len(slices) > 1 else None
        base, env = replica_argv(replica, model_arg, kv, weight_flags)
        for rank, piece in enumerate(slices):
            argv = node_argv(base, nnodes=len(slices), rank=str(rank), head=address_of(head), master_port=master or 0,
                             api_port=api, headless=rank > 0)
            role = f"replica {replica.index}" + (f", node-rank {rank} of {len(slices)}" if len(slices) > 1 else "")
            launch = Launch(piece.name, role + (" (headless)" if rank else ""), tuple(argv),
                            tuple([("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", piece.visible_devices), *env]))
            name = f"replica-{replica.index}/{piece.name}.sh"
            files[name] = to_script(launch, placeholders=placeholders,
                                    header=[f"{launch.role}: run on {piece.name}.", f"vLLM {plan.request.engine.version}."])
            launches.append(launch)
        endpoints.append((replica.index, f"{address_of(head)}:{api}"))
        order = " then ".join(f"`replica-{replica.index}/{p.name}.sh` on {p.name}" for p in reversed(slices[1:]))
        steps.append(f"- Replica {replica.index}: " + (f"start {order} (headless workers wait for the head), then "
                                                        if len(slices) > 1 else "")
                     + f"`replica-{replica.index}/{head.name}.sh` on {head.name}; it serves `http://{address_of(head)}:{api}`.")
    files.update(balancer_files(endpoints))
    book = Runbook(f"vLLM launch: {plan.request.model.name} on {plan.inventory.name}",
                   plan_intro(plan, "vllm", "flags of vLLM 0.33.0 (vllm/engine/arg_utils.py); the plan's memory figures "
                              f"follow vLLM {plan.request.engine.version}"))
    book.add("What runs where", layout_rows(plan))
    book.add("Before you start", [
        f"- Install vLLM {plan.request.engine.version} on every machine ({', '.join(sorted(types))}); every machine of a "
        "replica needs the same vLLM, the same model files at the same path and reaches the head's --master-port.",
        f"- The model: `{model_arg}`." + (f" {requirement}" if requirement else ""),
        "- A replica spread over machines joins with torch.distributed (NCCL); keep them on the fabric the plan assumed.",
        "", *placeholder_lines(placeholders)])
    book.add("Steps, in order", steps + ([f"- Then start the load balancer over the {len(endpoints)} replicas: "
                                         "`load-balancer/` (nginx) lists every server."] if len(endpoints) > 1 else []))
    book.add("Ports", [f"- API: {ep} (replica {i})" for i, ep in endpoints]
             + ["- Multi-node replicas: workers reach the head on its --master-port and on ports vLLM and NCCL open at "
                "random (the executor's message queue): allow all TCP between the machines of a replica. On machines "
                "with several networks, set `VLLM_HOST_IP` to each machine's address and `NCCL_SOCKET_IFNAME` to the "
                "interface the plan's fabric uses."])
    book.add("Health checks", ["- `curl -fsS http://ADDR:PORT/health` answers 200 once the server is ready.",
                               "- `curl -fsS http://ADDR:PORT/v1/models` lists the model."])
    book.add("How to tell it is up, and that it is the plan", expectation_lines(plan, "vllm"))
    files["README.md"] = book.render()
    return Bundle(target, dict(sorted(files.items())), tuple(launches))
