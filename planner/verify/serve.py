"""An independent check of a serving plan: every constraint recomputed from the inputs.

It reads only the plan's replicas, stages and device ids, and recomputes from the model,
precision, request and inventory, without the StageSizer or the candidates that built the plan:
device existence and single use, tensor-parallel legality, contiguous layer coverage, users
served, each device's memory (weights summed tensor by tensor, the rest from the engine's rules
under the settings the replica declares) against its engine capacity and against the figure the
plan reports, so a wrong figure is caught even where it still fits, and the per-user speed floor.
"""

from __future__ import annotations

from dataclasses import replace

from planner.estimate.activations import estimate_block_peak_elements
from planner.estimate.attention import build_layer_attention
from planner.estimate.engine_support import family_of
from planner.estimate.engines import EngineMemory, EngineSettings, build_engine_memory
from planner.estimate.host import (
    HOST_CLASS,
    build_host_machine,
    check_host_figures,
    estimate_pcie_gb_s,
)
from planner.estimate.parallelism import check_tensor_parallel_size
from planner.estimate.performance import HostWork, StagePlan
from planner.estimate.serving import ReplicaSpeed, Workload, estimate_replica_speed
from planner.estimate.shards import estimate_shard_fraction, is_on_stage
from planner.estimate.weights import WeightEstimate, estimate_weight_bytes
from planner.schemas.engine import EngineProfile
from planner.schemas.inventory import Cluster, Device
from planner.schemas.model import ModelSpec
from planner.schemas.plan import ReplicaOut, ServePlan
from planner.schemas.precision import PrecisionMix
from planner.schemas.serving import ServeRequest
from planner.schemas.speed import SpeedCalibration
from planner.topology import Topology
from planner.units import to_gb
from planner.verify.engine import check_serve_engine

TOLERANCE_BYTES = 1.0
REPORTED_TOLERANCE = 1e-6  # relative: the plan's figure and the recomputed one agree this closely


def settings_of(replica: ReplicaOut) -> EngineSettings:
    """The engine settings a replica's launch declares in the plan."""
    e = replica.engine
    return EngineSettings(memory_fraction=e.memory_fraction, batch_tokens=e.batch_tokens, max_sequences=e.max_sequences,
                          block_size=e.block_size, cuda_graphs=e.cuda_graphs, kv_cache_memory_bytes=e.kv_cache_memory_bytes,
                          notes=tuple(e.notes))


def estimate_device_need_bytes(model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate, request: ServeRequest,
                               memory: EngineMemory, settings: EngineSettings, *, layers: range, first: bool, last: bool,
                               tp: int, users: int, stages: int, embedding_on_host: bool = False,
                               host_experts: int = 0, head_on_host: bool = False) -> float:
    """What one device of a stage needs: weights summed tensor by tensor, the rest from the
    engine's rules applied to the layers afresh; without the routed experts of the first
    `host_experts` layers and (with `head_on_host`) the output layer, which the host holds."""
    w = 0.0
    for item in weights.tensors:
        if not is_on_stage(item.tensor, model, layers, first=first, last=last):
            continue
        layer = item.tensor.layer
        if layer is not None and layer < host_experts and item.tensor.component == "experts":
            continue
        if layer is None and head_on_host:
            continue
        if embedding_on_host and item.tensor.kind == "token_embd" and not (last and model.tie_word_embeddings):
            continue  # the engine keeps the input embedding in host memory
        share = item.bytes * estimate_shard_fraction(item.tensor, model, tp)
        if item.tensor.component == "experts" and item.tensor.is_matrix and family_of(item.format_id, mix) == "mxfp4":
            share *= settings.mxfp4_expert_factor  # the engine's kernels pad them
        w += share
    attention = build_layer_attention(model, mix.kv_cache_dtype, tp)
    layout = memory.kv_layout(model, attention, context=request.context, settings=settings, pipeline_stages=stages)
    kv = memory.kv_bytes(layout, layers.start, layers.stop, users, settings)
    peak = max((estimate_block_peak_elements(model, i, tp) for i in layers), default=0.0)
    act = memory.activation_bytes(model, peak, last=last, users=users, context=request.context, settings=settings)
    overhead = memory.overhead_bytes(model, layers=len(layers), tp=tp, settings=settings,
                                     reserve_bytes=request.runtime_reserve_bytes)
    return w + kv + act + request.overhead_factor * w + overhead


def _check_replica(replica: ReplicaOut, model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate,
                   request: ServeRequest, devices: dict[str, Device], seen: set[str], memory: EngineMemory,
                   embedding_on_host: bool, needs: dict[tuple, float]) -> tuple[list[str], list[tuple]]:
    problems: list[str] = []
    stages: list[tuple] = []
    host = replica.host_offload
    expected_start = host.layers[1] if host else 0
    host_experts, head_on_host = (host.expert_layers[1], host.holds_lm_head) if host else (0, False)
    last_index = len(replica.stages) - 1
    settings = settings_of(replica)
    if replica.engine.max_sequences < replica.users:
        problems.append(f"replica {replica.index}: {replica.users} users, but the launch admits {replica.engine.max_sequences}")
    for k, stage in enumerate(replica.stages):
        where = f"replica {replica.index} stage {k}"
        start, end = stage.layers
        if start != expected_start or end <= start:
            problems.append(f"{where}: layers {start}-{end} do not continue from {expected_start}")
        expected_start = end
        ids = [d.id for d in stage.devices]
        t = len(ids)
        if t != stage.tensor_parallel_size:
            problems.append(f"{where}: {t} devices for tensor-parallel size {stage.tensor_parallel_size}")
        illegal = check_tensor_parallel_size(model, t)
        if illegal:
            problems.append(f"{where}: {illegal}")
        for device_id in ids:
            if device_id not in devices:
                problems.append(f"device {device_id} is not in the inventory")
            elif device_id in seen:
                problems.append(f"device {device_id} is used twice")
            seen.add(device_id)
        known = [devices[i] for i in ids if i in devices]
        if len({d.spec for d in known}) > 1:
            problems.append(f"{where}: tensor-parallel ranks of different device types")
        if not known or end <= start or end > model.num_layers:
            continue
        key = (known[0].spec, start, end, k == 0, k == last_index, t, replica.users, len(replica.stages), settings,
               host_experts, head_on_host)
        if key not in needs:  # replicas repeat stages; the sum is a pure function of these
            padded = replace(settings, mxfp4_expert_factor=memory.settings(
                known[0], request, model=model, tp=t, pp=len(replica.stages)).mxfp4_expert_factor)
            needs[key] = estimate_device_need_bytes(
                model, mix, weights, request, memory, padded, layers=range(start, end), first=k == 0,
                last=k == last_index, tp=t, users=replica.users, stages=len(replica.stages),
                embedding_on_host=embedding_on_host, host_experts=host_experts, head_on_host=head_on_host)
        need = needs[key]
        for device, out in zip(known, (d for d in stage.devices if d.id in devices)):
            capacity = memory.capacity_bytes(device, settings)
            if need > capacity + TOLERANCE_BYTES:
                problems.append(f"{device.id} needs {to_gb(need):,.2f} GB, its engine may use {to_gb(capacity):,.2f} GB")
            reported = out.memory.total_bytes
            if abs(reported - need) > max(TOLERANCE_BYTES * 4, REPORTED_TOLERANCE * need):
                problems.append(f"{device.id}: the plan says {reported:,} bytes, recomputed {need:,.0f}")
        stages.append((known[0], range(start, end), t, ids[0], ids[1] if t > 1 else None))
    if expected_start != model.num_layers:
        problems.append(f"replica {replica.index}: layers end at {expected_start}, the model has {model.num_layers}")
    return problems, stages


def check_host_offload(replica: ReplicaOut, model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate,
                       request: ServeRequest, memory: EngineMemory, cluster: Cluster, engine: EngineProfile) -> list[str]:
    """A replica's host share recomputed tensor by tensor: the engine offloads, the host is the
    server's machine, its layers, experts and head as llama.cpp places them, and its bytes
    against the machine's RAM less the system's reserve and against the plan's figure."""
    host = replica.host_offload
    if host is None:
        return []
    where = f"replica {replica.index} host offload"
    if not engine.layout.host_offload:
        return [f"{where}: {engine.name} keeps every weight on its devices"]
    node = next((n for n in cluster.nodes if n.name == host.node), None)
    first = replica.stages[0].devices[0].node if replica.stages and replica.stages[0].devices else None
    if node is None or host.node != first:
        return [f"{where}: {host.node} is not the machine of the replica's first device"]
    machine = build_host_machine(node)
    if machine is None:
        return [f"{where}: {check_host_figures(node)}"]
    cpu, experts = host.layers[1], host.expert_layers[1]
    problems = []
    if host.layers[0] != 0 or host.expert_layers[0] != 0 or experts > model.num_layers or cpu >= model.num_layers:
        problems.append(f"{where}: layers {host.layers} and experts {host.expert_layers} are not llama.cpp's first layers")
    if host.holds_lm_head != (cpu > 0):
        problems.append(f"{where}: llama.cpp runs the output layer on the CPU exactly when a layer runs there")
    if experts and model.moe is None:
        problems.append(f"{where}: {model.name} has no routed experts to keep in host memory")
    w = 0.0
    for item in weights.tensors:
        layer, kind = item.tensor.layer, item.tensor.kind
        if (layer is None and (kind == "token_embd" or cpu > 0)) or (layer is not None and (
                layer < cpu or (layer < experts and item.tensor.component == "experts"))):
            w += item.bytes
    settings = settings_of(replica)
    layout = memory.kv_layout(model, build_layer_attention(model, mix.kv_cache_dtype, 1), context=request.context,
                              settings=settings, pipeline_stages=len(replica.stages))
    kv = memory.kv_bytes(layout, 0, cpu, replica.users, settings) if cpu else 0.0
    if w + kv > machine.capacity_bytes + TOLERANCE_BYTES:
        problems.append(f"{host.node}'s host memory holds {to_gb(machine.capacity_bytes):,.1f} GB beside the system, "
                        f"the offload needs {to_gb(w + kv):,.1f} GB")
    if abs(host.total_bytes - (w + kv)) > max(TOLERANCE_BYTES * 4, REPORTED_TOLERANCE * (w + kv)):
        problems.append(f"{where}: the plan says {host.total_bytes:,} bytes, recomputed {w + kv:,.0f}")
    return problems


def _host_work(replica: ReplicaOut, cluster: Cluster, calibrations: dict[str, SpeedCalibration], device: Device,
               k: int, last: bool) -> HostWork | None:
    host = replica.host_offload
    node = next((n for n in cluster.nodes if host and n.name == host.node), None)
    machine = build_host_machine(node) if node else None
    if machine is None:
        return None
    return HostWork(machine.device, calibrations[HOST_CLASS], estimate_pcie_gb_s(device.spec),
                    range(*host.layers) if k == 0 else range(0), range(*host.expert_layers), host.holds_lm_head and last)


def _replica_speed(replica_stages: list[tuple], model: ModelSpec, mix: PrecisionMix, weights: WeightEstimate,
                   request: ServeRequest, replica: ReplicaOut, calibrations: dict[str, SpeedCalibration], topology: Topology,
                   engine: EngineProfile, node_of: dict[str, str], cluster: Cluster) -> ReplicaSpeed:
    plans = []
    for k, (device, layers, t, head, second) in enumerate(replica_stages):
        tp_route = topology.route(head, second) if second else None
        nxt = topology.route(head, replica_stages[k + 1][3]) if k + 1 < len(replica_stages) else None
        plans.append(StagePlan(
            device.spec, layers, t, calibrations[device.spec.calibration_class],
            tp_route.bandwidth_gb_s if tp_route else 0.0, tp_route.latency_us if tp_route else 0.0,
            nxt.bandwidth_gb_s if nxt else 0.0, nxt.latency_us if nxt else 0.0,
            nxt is not None and node_of[head] != node_of[replica_stages[k + 1][3]],
            _host_work(replica, cluster, calibrations, device, k, k == len(replica_stages) - 1),
        ))
    workload = Workload(users=replica.users, prompt_tokens=request.prompt_tokens or 1, output_tokens=request.output_tokens or 1,
                        batch_tokens=replica.engine.batch_tokens)
    return estimate_replica_speed(model, mix, weights, plans, workload=workload, scheduling=engine.speed)


def check_replica_speed(replica: ReplicaOut, speed: ReplicaSpeed, request: ServeRequest) -> list[str]:
    """The targets a replica misses by the recomputed speed on the routes its devices really
    have, and speeds it claims beyond that (to the rounding the plan is written with)."""
    problems = []
    per_user = speed.decode_tokens_per_s_per_user
    if request.min_tokens_per_s and per_user < request.min_tokens_per_s * 0.999:
        problems.append(f"replica {replica.index}: {per_user:,.1f} tokens/s per user, below {request.min_tokens_per_s:g}")
    if request.max_ttft_s and speed.time_to_first_token_s > request.max_ttft_s * 1.001:
        problems.append(f"replica {replica.index}: {speed.time_to_first_token_s:,.2f} s to the first token, above "
                        f"{request.max_ttft_s:g} s")
    if replica.decode_tokens_per_s > speed.decode_tokens_per_s * 1.001 + 1e-3:
        problems.append(f"replica {replica.index}: claims {replica.decode_tokens_per_s:,.1f} tokens/s, recomputed "
                        f"{speed.decode_tokens_per_s:,.1f}")
    if replica.decode_tokens_per_s_per_user > per_user * 1.001 + 1e-3:
        problems.append(f"replica {replica.index}: claims {replica.decode_tokens_per_s_per_user:,.2f} tokens/s per user, "
                        f"recomputed {per_user:,.2f}")
    return problems


def check_serve_plan(plan: ServePlan, model: ModelSpec, mix: PrecisionMix, cluster: Cluster,
                     calibrations: dict[str, SpeedCalibration], topology: Topology, engine: EngineProfile) -> list[str]:
    """Every violation found, in words; empty when the plan is sound."""
    if not plan.replicas:
        return []
    if plan.request.engine.id != engine.id:
        return [f"the plan is for {plan.request.engine.id}, checked against {engine.id}"]
    request = plan.request
    memory = build_engine_memory(engine, request.engine.version, enforce_eager=request.enforce_eager)
    devices = {d.id: d for d in cluster.devices}
    weights = estimate_weight_bytes(model, mix)
    seen: set[str] = set()
    needs: dict[tuple, float] = {}
    problems: list[str] = []
    users = 0
    for replica in plan.replicas:
        users += replica.users
        found, stages = _check_replica(replica, model, mix, weights, request, devices, seen, memory,
                                       engine.layout.embedding_on_host, needs)
        problems += found
        if stages and len(stages) == len(replica.stages):
            speed = _replica_speed(stages, model, mix, weights, request, replica, calibrations, topology, engine,
                                   {d.id: d.node for d in cluster.devices}, cluster)
            problems += check_replica_speed(replica, speed, request)
        problems += check_host_offload(replica, model, mix, weights, request, memory, cluster, engine)
    if users != request.users:
        problems.append(f"the replicas serve {users} users, {request.users} were asked for")
    if request.request_rate and plan.performance and plan.performance.requests_per_s < request.request_rate * 0.999:
        problems.append(f"the replicas finish {plan.performance.requests_per_s:.3g} requests per second, "
                        f"{request.request_rate:g} were asked for")
    families = list(dict.fromkeys(f for f in (family_of(i.format_id, mix) for i in weights.tensors) if f))
    if model.checkpoint is not None and model.checkpoint.format == "gguf" and mix.weights.id == "checkpoint":
        families = list(dict.fromkeys("gguf" if f in ("float", "int8") else f for f in families))
    return problems + check_serve_engine(plan, engine, cluster, families, mix.kv_cache_dtype.family, model.num_layers)
