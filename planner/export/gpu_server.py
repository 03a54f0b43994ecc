"""What the vLLM and SGLang exports share: one launch of the engine per replica, the same
command on every machine of it with its node rank, pinned to the planned devices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from planner.export.bundle import ExportRefused, Launch, to_script
from planner.export.context import (
    MachineSlice,
    PortBook,
    address_of,
    address_placeholders,
    machine_slices,
)
from planner.schemas.plan import ReplicaOut, ServePlan


@dataclass(frozen=True)
class Server:
    """One GPU serving engine's launch rules."""

    target: str  # vllm, sglang
    label: str  # vLLM, SGLang
    tp_flag: str  # its tensor-parallel flag, for refusals
    api_port: int
    rendezvous_port: int
    replica_argv: Callable[..., tuple[list[str], list[tuple[str, str]]]]
    # (base, nnodes, rank, head address, rendezvous port, api port, worker?) -> one machine's command
    node_argv: Callable[..., list[str]]
    worker_note: str = ""  # how a non-head machine's role reads: vLLM's workers run --headless


def check_one_instance(replica: ReplicaOut, server: Server) -> None:
    """Refuse what one launch of the engine cannot run: one tensor-parallel size, one GPU model."""
    tps = {s.tensor_parallel_size for s in replica.stages}
    if len(tps) > 1:
        raise ExportRefused(f"{server.target}: replica {replica.index} has stages of tensor-parallel sizes {sorted(tps)}; "
                            f"{server.label} takes one {server.tp_flag} for every stage", field="--to")
    if len({d.type for s in replica.stages for d in s.devices}) > 1:
        raise ExportRefused(f"{server.target}: replica {replica.index} mixes device models; {server.label} does not run one "
                            f"launch over different GPU models", field="--to")


@dataclass
class ServerLaunches:
    """Every machine's script of every replica, with where each replica answers."""

    files: dict[str, str]
    launches: list[Launch]
    endpoints: list[tuple[int, str]]  # (replica, address:port)
    slices: list[list[MachineSlice]]  # per replica, its machines in rank order


def build_server_launches(plan: ServePlan, server: Server, *, model_arg: str, kv: str, weight_flags: list[str],
                          placeholders: dict[str, str]) -> ServerLaunches:
    """One script per machine and replica; `placeholders` gains the head addresses it uses."""
    ports = PortBook()
    out = ServerLaunches({}, [], [], [])
    for replica in plan.replicas:
        check_one_instance(replica, server)
        slices = machine_slices(plan, replica, server.target, equal=True)
        head = slices[0].machine
        placeholders.update(address_placeholders([head]))
        api = ports.take(head, "api", server.api_port)
        rendezvous = ports.take(head, "rendezvous", server.rendezvous_port) if len(slices) > 1 else 0
        base, env = server.replica_argv(replica, model_arg, kv, weight_flags)
        for rank, piece in enumerate(slices):
            argv = server.node_argv(base, nnodes=len(slices), rank=str(rank), head=address_of(head),
                                    rendezvous_port=rendezvous, api_port=api, worker=rank > 0)
            role = f"replica {replica.index}" + (f", node-rank {rank} of {len(slices)}" if len(slices) > 1 else "")
            role += server.worker_note if rank else ""
            launch = Launch(piece.name, role, tuple(argv),
                            (("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", piece.visible_devices), *env))
            out.files[f"replica-{replica.index}/{piece.name}.sh"] = to_script(
                launch, placeholders=placeholders,
                header=[f"{role}: run on {piece.name}.", f"{server.label} {plan.request.engine.version}."])
            out.launches.append(launch)
        out.endpoints.append((replica.index, f"{address_of(head)}:{api}"))
        out.slices.append(slices)
    return out
