"""`plan export --to llama.cpp`: one `llama-server` per replica on the machine of its first
stage, the other machines lending their devices through `ggml-rpc-server` (tools/rpc). Layers go
to devices by llama.cpp's own rule (src/llama-model.cpp load_tensors, build b11434): block_count
+ 1 slots, the output layer the last, slot il to the first device whose normalised cumulative
--tensor-split exceeds il / slots; the weights below put every cut half a slot inside its
boundary, so the plan's ranges come out exactly. --fit off keeps llama.cpp from moving them."""

from __future__ import annotations

from planner.export.bundle import Bundle, ExportRefused, Launch, to_script
from planner.export.context import (
    ExportContext,
    PortBook,
    address_of,
    address_placeholders,
    ip_literal_of,
    machines_by_name,
    model_reference,
    require_plan,
    require_vendors,
)
from planner.export.formats import engine_kv_dtype
from planner.export.runbook import Runbook, placeholder_lines, plan_intro
from planner.export.serving import (
    balancer_files,
    expectation_lines,
    layout_rows,
    llama_cpp_pool_tokens,
    replica_layers,
)
from planner.schemas.plan import DeviceOut, ServePlan

API_PORT = 8080  # llama-server --port default
RPC_PORT = 50052  # ggml-rpc-server -p default
MAX_DEVICES = 15  # -ts refuses 16 values or more (common/arg.cpp: N >= llama_max_devices())
BACKEND = {"nvidia": "CUDA", "amd": "ROCm", "apple": "MTL"}  # ggml device names: CUDA0, ROCm0, MTL0
RPC_WARNING = ("ggml-rpc-server is a proof of concept upstream calls fragile and insecure: never run it on an open "
               "network (tools/rpc/README.md). Keep these machines on a private network.")


def tensor_split_weights(layers: list[int], output: bool = True) -> list[float]:
    """--tensor-split weights giving device k exactly layers[k] layers, the last also the output
    slot (without `output`, the CPU runs the output layer: -ngl at most block_count)."""
    if len(layers) == 1:
        return [1.0]
    weights = [layers[0] - 0.5, *layers[1:-1], layers[-1] + (1.5 if output else 0.5)]
    return [float(w) for w in weights]


def host_offload_line(offload) -> str:
    """The runbook's words for what a replica keeps in host memory."""
    parts = []
    if offload.layers[1]:
        parts.append(f"layers 0-{offload.layers[1] - 1} and the output layer run on the CPU (-ngl below all)")
    if offload.expert_layers[1] > offload.layers[1]:
        parts.append(f"the routed experts of layers {offload.layers[1]}-{offload.expert_layers[1] - 1} stay in RAM "
                     f"(--n-cpu-moe {offload.expert_layers[1]})")
    return (f"Host memory of {offload.node}: {'; '.join(parts)}; {offload.total_bytes / 1e9:,.1f} GB of "
            f"{offload.capacity_bytes / 1e9:,.1f} GB.")


def _device_name(device: DeviceOut, context: ExportContext) -> str:
    spec = context.hardware[device.type]
    if spec.vendor not in BACKEND:
        raise ExportRefused(f"llama.cpp: no backend name for {spec.name} ({device.id})", field="--to")
    return f"{BACKEND[spec.vendor]}{device.index}"


def to_llamacpp(plan: ServePlan, context: ExportContext) -> Bundle:
    """The llama.cpp launch bundle of a serving plan."""
    target = "llama.cpp"
    require_plan(plan, target)
    if not isinstance(plan, ServePlan):
        raise ExportRefused("llama.cpp exports serving plans", field="--to")
    require_vendors(plan, context, target, ("nvidia", "amd", "apple"))
    model_arg, placeholders = model_reference(plan, context)
    if not model_arg.endswith(".gguf") and not model_arg.startswith("${"):
        placeholders["MODEL_GGUF"] = f"the GGUF file of {plan.request.model.name} ({plan.request.precision.weights}) on the server machine"
        model_arg = "${MODEL_GGUF}"
    kv = engine_kv_dtype("llama.cpp", plan.request.precision.kv_cache)
    machines = machines_by_name(plan)
    ports = PortBook()
    files: dict[str, str] = {}
    launches: list[Launch] = []
    endpoints: list[tuple[int, str]] = []
    steps: list[str] = []
    rpc_used = False
    for replica in plan.replicas:
        if any(s.tensor_parallel_size > 1 for s in replica.stages):
            raise ExportRefused(f"llama.cpp: replica {replica.index} splits a stage over devices (tensor parallelism); "
                                f"llama.cpp here splits by layer only", field="--to")
        devices = [s.devices[0] for s in replica.stages]
        if len(devices) > MAX_DEVICES:
            raise ExportRefused(f"llama.cpp: replica {replica.index} uses {len(devices)} devices; --tensor-split takes at "
                                f"most {MAX_DEVICES}", field="--to")
        host = machines[devices[0].node]
        placeholders.update(address_placeholders([host]))
        api = ports.take(host, "api", API_PORT)
        rpc_endpoints: list[str] = []
        names: list[str] = []
        for device in devices:
            if device.node == host.name:
                names.append(_device_name(device, context))
                continue
            machine = machines[device.node]
            placeholders.update(address_placeholders([machine]))
            port = ports.take(machine, "rpc", RPC_PORT)
            bind, need = ip_literal_of(machine, "ggml-rpc-server binds only to an IPv4 literal, tools/rpc")
            placeholders.update(need)
            argv = ("ggml-rpc-server", "-H", bind, "-p", str(port), "-d", _device_name(device, context), "-c")
            launch = Launch(machine.name, f"replica {replica.index}: lends {device.id} to {host.name}", argv,
                            (("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),) if context.hardware[device.type].vendor == "nvidia" else ())
            files[f"replica-{replica.index}/{machine.name}-rpc-{device.index}.sh"] = to_script(
                launch, placeholders=placeholders, header=[launch.role + ".", RPC_WARNING])
            launches.append(launch)
            names.append(f"RPC{len(rpc_endpoints)}")  # RPC devices are numbered in --rpc order
            rpc_endpoints.append(f"{address_of(machine)}:{port}")
        rpc_used |= bool(rpc_endpoints)
        e = replica.engine
        layers = replica_layers(replica)
        argv = ["llama-server", "-m", model_arg]
        if rpc_endpoints:
            argv += ["--rpc", ",".join(rpc_endpoints)]  # before --device, which resolves RPC names
        offload = replica.host_offload
        on_gpu_output = not (offload and offload.holds_lm_head)
        split = ",".join(f"{w:g}" for w in tensor_split_weights(layers, on_gpu_output))
        argv += ["--device", ",".join(names), "--split-mode", "layer", "--tensor-split", split,
                 "--n-gpu-layers", str(sum(layers) + (1 if on_gpu_output else 0)), "--fit", "off"]
        if offload and offload.expert_layers[1] > offload.layers[1]:
            argv += ["--n-cpu-moe", str(offload.expert_layers[1])]  # the routed experts of the first N layers stay in RAM
        argv += [
                 "--ctx-size", str(llama_cpp_pool_tokens(replica)), "--parallel", str(e.max_sequences), "--kv-unified",
                 "--batch-size", str(max(2048, e.batch_tokens)), "--ubatch-size", str(e.batch_tokens),
                 "--cache-type-k", kv, "--cache-type-v", kv, "--flash-attn", "on", "--host", "0.0.0.0", "--port", str(api)]
        nvidia = any(context.hardware[d.type].vendor == "nvidia" for d in devices if d.node == host.name)
        launch = Launch(host.name, f"replica {replica.index}: llama-server", tuple(argv),
                        (("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),) if nvidia else ())
        files[f"replica-{replica.index}/{host.name}-server.sh"] = to_script(
            launch, placeholders=placeholders, header=[f"{launch.role} on {host.name}.", f"llama.cpp {plan.request.engine.version}.",
                                                        f"Device order {','.join(names)} holds layers {layers}"
                                                        + (" (+ output on the last)." if on_gpu_output else ".")]
                     + ([host_offload_line(offload)] if offload else []))
        launches.append(launch)
        endpoints.append((replica.index, f"{address_of(host)}:{api}"))
        lenders = sorted({d.node for d in devices if d.node != host.name})
        steps.append(f"- Replica {replica.index}: " + (f"start the rpc servers on {', '.join(lenders)} first, then "
                                                        if lenders else "") + f"`replica-{replica.index}/{host.name}-server.sh` "
                     f"on {host.name}; it serves `http://{address_of(host)}:{api}`.")
    files.update(balancer_files(endpoints))
    book = Runbook(f"llama.cpp launch: {plan.request.model.name} on {plan.inventory.name}",
                   plan_intro(plan, "llama.cpp", "flags of llama.cpp build b11434 (common/arg.cpp)"))
    book.add("What runs where", layout_rows(plan))
    book.add("Before you start", [
        f"- Build llama.cpp {plan.request.engine.version} (with `-DGGML_RPC=ON` where RPC is used) on every machine; "
        "client and rpc servers must come from the same release (the RPC protocol's major version must match).",
        f"- The model: `{model_arg}` ({plan.request.precision.weights}, on the server machine only; rpc servers receive the "
        "tensors over the network, `-c` caches them locally).",
        *([f"- {RPC_WARNING}"] if rpc_used else []),
        "", *placeholder_lines(placeholders)])
    book.add("Steps, in order", steps + (["- Then the load balancer in `load-balancer/` (nginx)."] if len(endpoints) > 1 else [])
             + ["- `CUDA_DEVICE_ORDER=PCI_BUS_ID` makes CUDA<i> the inventory's (nvidia-smi's) device i; CUDA's own default "
                "order is fastest first."])
    book.add("Ports", [f"- API: {ep} (replica {i})" for i, ep in endpoints]
             + (["- rpc servers: the port in each `*-rpc-*.sh`; only the server machine needs to reach them."] if rpc_used else []))
    book.add("Health checks", ["- `curl -fsS http://ADDR:PORT/health` returns `{\"status\":\"ok\"}` once the model is loaded.",
                               "- `curl -fsS http://ADDR:PORT/slots` lists the slots and their context."])
    book.add("How to tell it is up, and that it is the plan", expectation_lines(plan, "llama.cpp")
             + ["- `load_tensors: offloaded N/N layers to GPU` with N = the --n-gpu-layers above; each device's "
                "`model buffer size` follows its layers."])
    files["README.md"] = book.render()
    return Bundle(target, dict(sorted(files.items())), tuple(launches))
