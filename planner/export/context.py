"""What an exporter reads beside the plan: the model it was made for (already checked against
the plan's digest), where to load it from, the hardware figures of its devices, and the shared
views every serving exporter takes of a replica (its machines in rank order, their addresses)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.export.bundle import ExportRefused, placeholder, var_name
from planner.schemas.hardware import HardwareSpec
from planner.schemas.model import ModelSpec
from planner.schemas.plan import DeviceOut, MachineOut, ReplicaOut, ServePlan, TrainPlan


@dataclass(frozen=True)
class ExportContext:
    """Inputs of an export besides the plan."""

    model: ModelSpec
    hardware: dict[str, HardwareSpec]  # by the plan's device type
    model_path: str | None = None  # --model-path: a local path or repository id to load instead of the plan's
    assets: dict[str, str] | None = None  # files bundles carry unchanged (planner/catalog/exports/), by name


@dataclass(frozen=True)
class MachineSlice:
    """The devices one replica uses on one machine, in the replica's rank order."""

    machine: MachineOut
    devices: tuple[DeviceOut, ...]

    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def visible_devices(self) -> str:
        """CUDA_VISIBLE_DEVICES: the machine's device indices in rank order."""
        return ",".join(str(d.index) for d in self.devices)


def address_of(machine: MachineOut) -> str:
    """The machine's address, or the ${NAME_ADDR} placeholder the run-book lists."""
    return machine.address or placeholder(f"{var_name(machine.name)}_ADDR")


def ip_literal_of(machine: MachineOut, purpose: str) -> tuple[str, dict[str, str]]:
    """The machine's address when it is an IP literal, else a ${NAME_IP} placeholder (for tools
    that take only an IP: ggml-rpc-server's bind address, mlx's ring hostfile)."""
    if machine.address and is_ip_literal(machine.address):
        return machine.address, {}
    name = f"{var_name(machine.name)}_IP"
    return placeholder(name), {name: f"the IP address of {machine.name} on the private network ({purpose})"}


def is_ip_literal(address: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def address_placeholders(machines: list[MachineOut]) -> dict[str, str]:
    """Placeholder name -> what to put there, for machines without an address."""
    return {f"{var_name(m.name)}_ADDR": f"the address of {m.name} (host name or IP the other machines reach)"
            for m in machines if m.address is None}


def model_reference(plan: ServePlan | TrainPlan, context: ExportContext) -> tuple[str, dict[str, str]]:
    """What the launch loads: --model-path, else the Hugging Face id, else the file the plan read,
    else a ${MODEL_PATH} placeholder; with the placeholder's description."""
    ref = plan.request.model
    value = context.model_path or ref.hf_repo or ref.path
    if value:
        return value, {}
    return placeholder("MODEL_PATH"), {"MODEL_PATH": f"where every machine finds {ref.name} (same path on each)"}


def machines_by_name(plan: ServePlan | TrainPlan) -> dict[str, MachineOut]:
    return {m.name: m for m in plan.inventory.machines}


def rank_order(replica: ReplicaOut) -> list[DeviceOut]:
    """The replica's devices in engine rank order: stage by stage, tensor-parallel rank fastest."""
    return [d for stage in replica.stages for d in stage.devices]


def plan_devices(plan: ServePlan | TrainPlan) -> list:
    """Every device the plan uses: replicas' or training ranks' stages, in order."""
    units = plan.replicas if isinstance(plan, ServePlan) else plan.ranks
    return [d for unit in units for stage in unit.stages for d in stage.devices]


def group_by_machine(plan: ServePlan | TrainPlan, devices: list, *, target: str, what: str, equal: bool
                     ) -> list[tuple[MachineOut, list]]:
    """Devices in rank order cut into one contiguous run per machine; `equal` also requires the
    same number on each (torch.distributed launchers give node k ranks [k*local, (k+1)*local))."""
    machines = machines_by_name(plan)
    runs: list[tuple[str, list]] = []
    for device in devices:
        if runs and runs[-1][0] == device.node:
            runs[-1][1].append(device)
        else:
            runs.append((device.node, [device]))
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise ExportRefused(f"{target}: {what} returns to machine {_repeated(names)} after leaving it in {target}'s rank "
                            f"order; each machine must hold one contiguous run of ranks", field="--to")
    if equal and len({len(ds) for _, ds in runs}) > 1:
        per = ", ".join(f"{n} {len(ds)}" for n, ds in runs)
        raise ExportRefused(f"{target}: {what} uses a different number of devices per machine ({per}); {target} starts "
                            f"the same number of ranks on every node", field="--to")
    return [(machines[n], ds) for n, ds in runs]


def machine_slices(plan: ServePlan, replica: ReplicaOut, target: str, *, equal: bool) -> list[MachineSlice]:
    """The replica's machines in rank order, each with its contiguous run of ranks."""
    runs = group_by_machine(plan, rank_order(replica), target=target, what=f"replica {replica.index}", equal=equal)
    return [MachineSlice(machine, tuple(ds)) for machine, ds in runs]


def _repeated(names: list[str]) -> str:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return names[0]


def require_plan(plan: ServePlan | TrainPlan, target: str) -> None:
    """Only a verified plan is exported."""
    has = bool(plan.replicas) if isinstance(plan, ServePlan) else plan.layout is not None
    if not has:
        raise ExportRefused(f"{target}: the plan has no layout to export (status {plan.solver.status.value})", field="PLAN")
    if plan.verification:
        raise ExportRefused(f"{target}: the plan fails its verification ({plan.verification[0]}); re-plan before exporting",
                            field="PLAN")


def require_vendors(plan: ServePlan | TrainPlan, context: ExportContext, target: str, vendors: tuple[str, ...]) -> None:
    """Refuse devices of a vendor the target does not run on."""
    for d in plan_devices(plan):
        spec = context.hardware.get(d.type)
        vendor = spec.vendor if spec else "other"
        if vendor not in vendors:
            name = spec.name if spec else d.type
            raise ExportRefused(f"{target} does not run on {name} ({d.id}); it runs on {' and '.join(vendors)} devices",
                                field="--to")


def port_for(machine: MachineOut, kind: str, default: int, offset: int) -> int:
    """The machine's port of this kind (inventory ports, else the engine's usual), moved up by
    `offset` when several launches share the machine."""
    base = {"api": machine.api_port, "rendezvous": machine.rendezvous_port, "rpc": machine.rpc_port}[kind] or default
    port = base + offset
    if port > 65535:
        raise ExportRefused(f"port {port} on {machine.name} is out of range; give lower ports in the inventory", field="--to")
    return port


class PortBook:
    """Hands out ports per machine so launches sharing a machine never collide."""

    def __init__(self) -> None:
        self._used: dict[tuple[str, str], int] = {}

    def take(self, machine: MachineOut, kind: str, default: int) -> int:
        key = (machine.name, kind)
        offset = self._used.get(key, 0)
        self._used[key] = offset + 1
        return port_for(machine, kind, default, offset)
