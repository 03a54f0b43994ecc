"""Does a plan obey its engine's profile? Re-checked from the plan itself and the profile's data,
without the candidate builder's rules (planner/candidates/engine_rules.py), so a layout the
builder let through by mistake is caught."""

from __future__ import annotations

from collections import Counter

from planner.schemas.engine import EngineProfile, Where
from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Cluster, Device
from planner.schemas.plan import ServePlan, TrainPlan


def _covered(spec: HardwareSpec, where: tuple[Where, ...]) -> bool:
    return any(w.covers(spec) for w in where)


def _device_problems(engine: EngineProfile, devices: list[Device], families: list[str], kv_family: str | None) -> list[str]:
    problems = []
    for spec in {d.spec.id: d.spec for d in devices}.values():
        if not _covered(spec, engine.runs_on):
            problems.append(f"{engine.name} does not run on {spec.id}")
            continue
        for family in families:
            table = [s for s in engine.weights if s.family == family]
            if not any(not s.where or _covered(spec, s.where) for s in table):
                problems.append(f"{engine.name} does not run {family} weights on {spec.id}")
        if kv_family is not None:
            table = [s for s in engine.kv_cache if s.family == kv_family]
            if not any(not s.where or _covered(spec, s.where) for s in table):
                problems.append(f"{engine.name} does not run a {kv_family} KV cache on {spec.id}")
    return problems


def _tensor_group_problem(group: list[Device], size: int, cluster: Cluster, engine: EngineProfile) -> str | None:
    """Why a stage's tensor-parallel group breaks the engine's rules: inside one machine only
    where the engine has tensor parallelism there; over machines only where it shards tensors
    across machines, taking whole machines, every link between them fit for it."""
    layout = engine.layout
    nodes = {d.node for d in group}
    if size <= 1:
        return None
    if len(nodes) <= 1:
        return f"{engine.name} has no tensor parallelism inside a machine" if layout.tensor_parallel == "none" else None
    if not layout.tensor_parallel_across_machines:
        return "tensor-parallel ranks span machines"
    whole = {n.name: len(n.devices) for n in cluster.nodes}
    per_node = Counter(d.node for d in group)
    if any(per_node[n] != whole[n] for n in per_node):
        return f"a tensor-parallel group over machines takes them whole, not {dict(per_node)}"
    links = [x.link for x in cluster.links if x.a in nodes or x.b in nodes]
    unfit = sorted({x.id for x in links if not x.tensor_parallel_ok})
    if unfit or not links:
        return f"tensor parallelism across machines over {', '.join(unfit) or 'no link'}, which is not fit for it"
    return None


def check_serve_engine(plan: ServePlan, engine: EngineProfile, cluster: Cluster, families: list[str],
                       kv_family: str, num_layers: int) -> list[str]:
    """Every way the serving plan breaks its engine's layout and hardware rules."""
    layout = engine.layout
    devices = {d.id: d for d in cluster.devices}
    problems: list[str] = []
    used: list[Device] = []
    for replica in plan.replicas:
        where = f"replica {replica.index}"
        sizes = [s.tensor_parallel_size for s in replica.stages]
        members = [devices[d.id] for s in replica.stages for d in s.devices if d.id in devices]
        used += members
        counts = [s.layers[1] - s.layers[0] for s in replica.stages]
        for k, stage in enumerate(replica.stages):
            problem = _tensor_group_problem([devices[d.id] for d in stage.devices if d.id in devices],
                                            stage.tensor_parallel_size, cluster, engine)
            if problem:
                problems.append(f"{where} stage {k}: {problem}")
        if len(set(sizes)) > 1:
            problems.append(f"{where}: tensor-parallel sizes {sizes} differ between stages")
        if len(sizes) > 1 and layout.pipeline == "none":
            problems.append(f"{where}: {engine.name} has no pipeline stages")
        if len(sizes) > 1 and layout.pipeline == "even" and len(set(counts)) > 1:
            problems.append(f"{where}: uneven stages {counts}; {engine.name} splits evenly")
        if layout.pipeline_layers_divisible and num_layers % len(sizes):
            problems.append(f"{where}: {num_layers} layers do not divide by {len(sizes)} stages")
        if len(sizes) > 1 and not layout.tensor_and_pipeline and any(t > 1 for t in sizes):
            problems.append(f"{where}: tensor and pipeline parallelism together")
        if not layout.mixed_device_types and len({d.spec for d in members}) > 1:
            problems.append(f"{where}: more than one device model")
        if layout.max_devices_per_replica is not None and len(members) > layout.max_devices_per_replica:
            problems.append(f"{where}: {len(members)} devices, {engine.name} runs at most {layout.max_devices_per_replica}")
        per_node = Counter(d.node for d in members)
        if not layout.multi_machine_replica and len(per_node) > 1:
            problems.append(f"{where}: spans machines")
        if layout.same_devices_per_machine and len(set(per_node.values())) > 1:
            problems.append(f"{where}: devices per machine {dict(per_node)} differ")
    return problems + _device_problems(engine, used, families, kv_family)


def check_train_engine(plan: TrainPlan, engine: EngineProfile, cluster: Cluster, families: list[str],
                       num_layers: int) -> list[str]:
    """Every way the training plan breaks its engine's rules."""
    layout, rules, t = engine.layout, engine.training, plan.layout
    if t is None or rules is None:
        return []
    problems: list[str] = []
    if layout.tensor_parallel == "none" and t.tensor_parallel_size > 1:
        problems.append(f"{engine.name} has no tensor parallelism")
    if t.zero_stage not in rules.zero_stages:
        problems.append(f"{engine.name} does not run ZeRO-{t.zero_stage}")
    if t.pipeline_parallel_size > 1 and rules.pipeline_max_zero_stage is not None and t.zero_stage > rules.pipeline_max_zero_stage:
        problems.append(f"{engine.name} rejects ZeRO-{t.zero_stage} with pipeline parallelism")
    if t.offload not in rules.offloads:
        problems.append(f"{engine.name} does not offload {t.offload}")
    devices = {d.id: d for d in cluster.devices}
    used = [devices[d.id] for r in plan.ranks for s in r.stages for d in s.devices if d.id in devices]
    for rank in plan.ranks[:1]:
        counts = [s.layers[1] - s.layers[0] for s in rank.stages]
        if rules.pipeline_split == "balanced" and counts and max(counts) - min(counts) > 1:
            problems.append(f"stage layers {counts} are not balanced")
        if rules.pipeline_split == "first_last" and len(counts) > 2 and len(set(counts[1:-1])) > 1:
            problems.append(f"middle stages {counts[1:-1]} differ")
        if rules.pipeline_split == "first_last" and len(counts) > 1 and not (counts[0] == counts[-1] == num_layers // len(counts)) \
                and len(counts) > 2 and counts[1] * (len(counts) - 2) != num_layers - counts[0] - counts[-1]:
            problems.append(f"stage layers {counts} are not a first/last split")
    per_node = Counter(d.node for d in used)
    if layout.same_devices_per_machine and len(set(per_node.values())) > 1:
        problems.append(f"devices per machine {dict(per_node)} differ")
    return problems + _device_problems(engine, used, families, None)
