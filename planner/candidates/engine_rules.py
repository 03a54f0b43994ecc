"""The layouts an engine can run, as the candidates build them: which chains of tensor-parallel
units make a legal replica for the engine's profile (planner/catalog/engines/), how an even
pipeline lays its layers, and how a replica spanning machines spreads its stages over them."""

from __future__ import annotations

import math

from planner.candidates.classes import UnitType
from planner.schemas.engine import EngineProfile


def check_units(profile: EngineProfile, units: list[UnitType], num_layers: int) -> str | None:
    """Why the engine cannot run one replica on these stages (in order), or None."""
    layout = profile.layout
    stages = len(units)
    sizes = {u.tp for u in units}
    name = profile.name
    if stages > 1 and layout.pipeline == "none":
        return f"{name} runs no pipeline stages"
    spanning = [u for u in units if u.spans_machines]
    if spanning and not layout.tensor_parallel_across_machines:
        return f"{name} keeps a tensor-parallel group in one machine"
    if layout.tensor_parallel == "none" and sizes != {1} and len(spanning) != len(units):
        return f"{name} runs no tensor parallelism inside a machine"
    if len(sizes) > 1:
        return f"{name} needs one tensor-parallel size for every stage"
    if stages > 1 and not layout.tensor_and_pipeline and sizes != {1}:
        return f"{name} runs tensor or pipeline parallelism, not both"
    if not layout.mixed_device_types and len({u.device_class.spec for u in units}) > 1:
        return f"{name} runs one device model per replica"
    devices = sum(u.tp for u in units)
    if layout.max_devices_per_replica is not None and devices > layout.max_devices_per_replica:
        return f"{name} runs at most {layout.max_devices_per_replica} devices per replica"
    if layout.pipeline == "even" and layout.pipeline_layers_divisible and num_layers % stages:
        return f"{name} splits layers evenly and drops the remainder: {num_layers} layers do not divide by {stages} stages"
    if not layout.multi_machine_replica and _machines(units) > 1:
        return f"{name} runs a replica on one machine"
    if layout.same_devices_per_machine:
        spread = stages_per_machine(units)
        if spread == 0:
            return (f"{name} needs the same number of devices on every machine of a replica: {stages} stages of "
                    f"{units[0].tp} do not spread evenly")
        block = (spread or 0) * units[0].tp
        cls = units[0].device_class
        if spread and len(cls.nodes) > 1 and (block & (block - 1) or cls.devices_per_node % block):
            # Blocks of a power of two that divides the machine pack identical machines exactly.
            return f"{name}: {spread} stages of {units[0].tp} per machine would leave unusable gaps in {cls.key}"
    return None


def _machines(units: list[UnitType]) -> int:
    """Machines a chain of units needs when each class fills a machine before the next."""
    total = 0
    for index in {u.device_class.index for u in units}:
        group = [u for u in units if u.device_class.index == index]
        if group[0].spans_machines:
            total += sum(u.machines for u in group)
            continue
        per_machine = max(1, group[0].device_class.devices_per_node // group[0].tp)
        total += math.ceil(len(group) / per_machine)
    return total


def stages_per_machine(units: list[UnitType]) -> int | None:
    """How many stages each machine of the replica holds when every machine must hold the same
    number (None: the replica fits one machine; 0: no even spread exists)."""
    classes = sorted({u.device_class.index for u in units})
    counts = []
    for index in classes:
        group = [u for u in units if u.device_class.index == index]
        if group[0].spans_machines:  # each stage takes whole machines: one stage's share per machine
            counts += [1] * sum(u.machines for u in group)
            continue
        per_machine = group[0].device_class.devices_per_node // group[0].tp
        machines = math.ceil(len(group) / max(per_machine, 1))
        if per_machine < 1 or len(group) % machines:
            return 0
        counts += [len(group) // machines] * machines
    if len(counts) == 1:
        return None
    return counts[0] if len(set(counts)) == 1 else 0


def even_counts(profile: EngineProfile, stages: int, num_layers: int) -> list[int] | None:
    """Layers per stage for an engine that splits evenly (None: any split)."""
    if profile.layout.pipeline != "even":
        return None
    base = num_layers // stages
    return [base + (1 if k < num_layers % stages else 0) for k in range(stages)]
