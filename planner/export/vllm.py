"""`plan export --to vllm`: one `vllm serve` per replica (flags of vLLM 0.33.0,
vllm/engine/arg_utils.py and vllm/entrypoints/common/cli_args.py), spread over machines with
--nnodes/--node-rank/--master-addr and --headless on the others (docs/serving/
parallelism_scaling.md, "Running vLLM with MultiProcessing"); uneven stages through
VLLM_PP_LAYER_PARTITION, identical on every node (vllm/distributed/utils.py get_pp_indices).
Replicas are separate servers behind a load balancer: vLLM's data-parallel mode would shard a
MoE model's experts over the whole group (docs/serving/data_parallel_deployment.md), which is not
the plan's full copy per replica."""

from __future__ import annotations

from planner.export.bundle import Bundle, ExportRefused
from planner.export.context import (
    ExportContext,
    model_reference,
    require_plan,
    require_vendors,
)
from planner.export.formats import engine_kv_dtype, engine_weight_flags
from planner.export.gpu_server import Server, build_server_launches
from planner.export.runbook import Runbook, placeholder_lines, plan_intro
from planner.export.serving import (
    balancer_files,
    expectation_lines,
    layout_rows,
    replica_layers,
)
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


def node_argv(base: list[str], *, nnodes: int, rank: str, head: str, rendezvous_port: int, api_port: int,
              worker: bool) -> list[str]:
    """One node's command: the multi-node flags, and the API on the head (--headless on the others)."""
    argv = list(base)
    if nnodes > 1:
        argv += ["--nnodes", str(nnodes), "--node-rank", rank, "--master-addr", head, "--master-port", str(rendezvous_port)]
    return argv + (["--headless"] if worker else ["--host", "0.0.0.0", "--port", str(api_port)])


SERVER = Server("vllm", "vLLM", "--tensor-parallel-size", API_PORT, MASTER_PORT, replica_argv, node_argv, " (headless)")


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
    built = build_server_launches(plan, SERVER, model_arg=model_arg, kv=kv, weight_flags=weight_flags,
                                  placeholders=placeholders)
    files, launches, endpoints = built.files, built.launches, built.endpoints
    steps: list[str] = []
    for (replica_index, endpoint), slices in zip(endpoints, built.slices):
        head = slices[0]
        order = " then ".join(f"`replica-{replica_index}/{p.name}.sh` on {p.name}" for p in reversed(slices[1:]))
        steps.append(f"- Replica {replica_index}: " + (f"start {order} (headless workers wait for the head), then "
                                                        if len(slices) > 1 else "")
                     + f"`replica-{replica_index}/{head.name}.sh` on {head.name}; it serves `http://{endpoint}`.")
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
