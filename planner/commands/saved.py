"""Commands on saved plans: `plan export` (launch files), `plan check` (does it still hold on the
inventory as it is now?) and `plan diff` (what changed between two plans)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.assign.identity import build_inventory_digest, build_model_digest
from planner.candidates.training import build_training_workload
from planner.errors import InputError, PlannerError
from planner.export import Bundle, ExportContext, build_bundle
from planner.export.context import plan_devices
from planner.loaders.calibration import load_calibration
from planner.loaders.catalog import load_model
from planner.loaders.engines import find_engine
from planner.loaders.exports import load_export_assets
from planner.loaders.formats import build_precision_mix
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.inventory import load_inventory
from planner.loaders.plan import load_plan
from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.plan import MachineOut, ServePlan, TrainPlan
from planner.schemas.precision import PrecisionMix
from planner.topology import build_topology
from planner.verify import check_serve_plan, check_train_plan


def _model_of(plan: ServePlan | TrainPlan) -> ModelSpec:
    ref = plan.request.model
    return load_model(ref.path if ref.kind != "catalog" and ref.path else ref.name)


def _mix_of(plan: ServePlan | TrainPlan) -> PrecisionMix:
    p = plan.request.precision
    return build_precision_mix(p.weights, p.kv_cache, **{k: v for k, v in p.components.items() if k != "router"})


def _with_addresses(plan: ServePlan | TrainPlan, cluster: Cluster) -> ServePlan | TrainPlan:
    """The plan with machine addresses and ports from the inventory as it is now."""
    machines = [MachineOut(name=n.name, address=n.address, api_port=n.ports.api, rendezvous_port=n.ports.rendezvous,
                           rpc_port=n.ports.rpc) for n in cluster.nodes]
    missing = sorted({d.node for d in plan_devices(plan)} - {m.name for m in machines})
    if missing:
        raise InputError(f"the inventory has no machine {', '.join(missing[:4])} of the plan; `plan check` says what "
                         f"changed", file=cluster.source, field="--inventory")
    inventory = plan.inventory.model_copy(update={"machines": machines})
    return plan.model_copy(update={"inventory": inventory})


def run_export(plan_file: str, target: str, *, model_path: str | None = None, inventory: str | None = None) -> Bundle:
    """The bundle of a saved plan; exit 2 (InputError) when the target cannot express it."""
    plan = load_plan(plan_file)
    return export_plan(plan, target, model_path=model_path, inventory=inventory)


def export_plan(plan: ServePlan | TrainPlan, target: str, *, model_path: str | None = None,
                inventory: str | None = None) -> Bundle:
    """The bundle of a plan in memory (`plan deploy --export` and `plan export`)."""
    if model_path is not None and (not model_path.strip() or any(ord(c) < 32 or ord(c) == 127 for c in model_path)):
        raise InputError("expected a path or repository id without control characters or newlines", field="--model-path")
    model = _model_of(plan)
    if build_model_digest(model) != plan.request.model.digest:
        raise InputError(f"the model {plan.request.model.name} is not the one the plan was made for (its digest changed); "
                         f"re-plan with `plan deploy`", field="PLAN")
    hardware: dict[str, HardwareSpec] = dict(load_hardware_catalog())
    if inventory:
        cluster = load_inventory(inventory)
        hardware.update({d.spec.id: d.spec for d in cluster.devices})
        plan = _with_addresses(plan, cluster)
    unknown = sorted({d.node for d in plan_devices(plan)} - {m.name for m in plan.inventory.machines})
    if unknown:
        raise InputError(f"the plan places devices on {', '.join(unknown[:4])}, which its inventory.machines does not list; "
                         f"re-plan with `plan deploy`", field="PLAN")
    missing = sorted({d.type for d in plan_devices(plan)} - set(hardware))
    if missing:
        raise InputError(f"the plan's devices {', '.join(missing)} are not in the hardware catalog; give the inventory "
                         f"they come from (--inventory)", field="--inventory")
    return build_bundle(target, plan, ExportContext(model=model, hardware=hardware, model_path=model_path,
                                                      assets=load_export_assets()))


@dataclass(frozen=True)
class CheckResult:
    """Whether a saved plan still holds, and every violation in words."""

    plan_file: str
    inventory_file: str
    violations: list[str]
    notes: list[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.violations else 0

    def to_dict(self) -> dict:
        return {"plan": self.plan_file, "inventory": self.inventory_file, "holds": not self.violations,
                "violations": self.violations, "notes": self.notes}


def run_check(plan_file: str, inventory_file: str) -> CheckResult:
    """Re-verify a saved plan against the inventory as it is now, with the independent verifier."""
    plan = load_plan(plan_file)
    cluster = load_inventory(inventory_file)
    violations: list[str] = []
    notes: list[str] = []
    if not plan_devices(plan):
        return CheckResult(plan_file, inventory_file, [f"the plan has no layout (status {plan.solver.status.value})"], notes)
    try:
        model = _model_of(plan)
    except PlannerError as err:
        violations.append(f"the model cannot be read any more: {err}")
        model = None
    if model is not None and build_model_digest(model) != plan.request.model.digest:
        violations.append(f"the model {plan.request.model.name} changed since the plan was made (digest "
                          f"{build_model_digest(model)[:19]}..., the plan's {plan.request.model.digest[:19]}...)")
        model = None
    devices = {d.id: d for d in cluster.devices}
    for d in plan_devices(plan):
        now = devices.get(d.id)
        if now is None:
            node = "its machine is gone" if d.node not in {n.name for n in cluster.nodes} else "the machine has fewer devices"
            violations.append(f"{d.id} ({d.type}) is not in the inventory: {node}")
        elif now.spec.id != d.type:
            violations.append(f"{d.id} is now {now.spec.id}; the plan put {d.type} there")
    if build_inventory_digest(cluster) != plan.inventory.digest:
        notes.append("the inventory differs from the one planned on (devices, budgets or links); re-verified against it")
    if model is None or violations:
        return CheckResult(plan_file, inventory_file, violations, notes)
    engine = find_engine(plan.request.engine.id, kind=plan.mode)
    mix = _mix_of(plan)
    if isinstance(plan, ServePlan):
        found = check_serve_plan(plan, model, mix, cluster, load_calibration(engine.speed.speed_class), build_topology(cluster), engine)
    else:
        lay = plan.layout
        assert lay is not None
        workload = build_training_workload(plan.request, tp=lay.tensor_parallel_size, zero_stage=lay.zero_stage,
                                           offload=lay.offload, recompute=lay.recompute)
        found = check_train_plan(plan, model, mix, workload, cluster, engine)
    return CheckResult(plan_file, inventory_file, violations + found, notes)
