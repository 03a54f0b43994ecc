"""`plan export --to exo` and `--to mlx-lm`: Mac clusters.

exo (b5375f8): an instance is one Sharding for all its nodes, Pipeline with half-open
[start_layer, end_layer) per node or Tensor over all of them (src/exo/shared/types/worker/
shards.py); pinned layers go in through POST /instance with a placement from GET /instance/previews
whose ranges are rewritten (src/exo/api/main.py). mlx-lm (0.32.2, mlx_lm/server.py): the whole
mlx.launch group is tensor parallel, or a pipeline with --pipeline whose split is fixed:
len(layers) // size per rank, rank 0 holding the last layers (mlx_lm/models/pipeline.py), and
layers are dropped when they do not divide, so only an even split is exported."""

from __future__ import annotations

import json

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
from planner.export.runbook import Runbook, placeholder_lines, plan_intro
from planner.export.serving import balancer_files, expectation_lines, layout_rows
from planner.schemas.plan import ReplicaOut, ServePlan

EXO_PORT = 52415  # exo's API (src/exo/main.py)
MLX_PORT = 8080  # mlx_lm.server --port default
FLOAT_KV = ("fp16", "bf16")


def _sharding(replica: ReplicaOut, target: str) -> str:
    """Pipeline (one device per stage) or Tensor (one stage over machines); never both."""
    stages = replica.stages
    if len(stages) == 1 and stages[0].tensor_parallel_size > 1:
        nodes = [d.node for d in stages[0].devices]
        if len(set(nodes)) != len(nodes):
            raise ExportRefused(f"{target}: replica {replica.index} splits tensors over two devices of one machine", field="--to")
        return "Tensor"
    if any(s.tensor_parallel_size > 1 for s in stages):
        raise ExportRefused(f"{target}: replica {replica.index} combines tensor and pipeline parallelism; {target} runs "
                            f"one or the other over all its machines", field="--to")
    return "Pipeline"


def _double_quoted(arg: str) -> str:
    """One argument of the command that `sh -c` runs, single-quoted for that inner shell. The launch
    script passes the whole command in double quotes, so a ${NAME} placeholder is still expanded
    first, and a value with blanks (a model path) stays one argument."""
    return "'" + arg.replace("'", "'\\''") + "'"


def _common(plan: ServePlan, context: ExportContext, target: str) -> None:
    require_plan(plan, target)
    if not isinstance(plan, ServePlan):
        raise ExportRefused(f"{target} exports serving plans", field="--to")
    require_vendors(plan, context, target, ("apple",))
    if plan.request.precision.kv_cache not in FLOAT_KV:
        raise ExportRefused(f"{target}: the plan's {plan.request.precision.kv_cache} KV cache is not one {target} batches "
                            f"with (a 16-bit cache)", field="--to")


def to_exo(plan: ServePlan, context: ExportContext) -> Bundle:
    """The exo bundle: per replica, the placement to create and the script that creates it."""
    target = "exo"
    _common(plan, context, target)
    machines = machines_by_name(plan)
    model_id = context.model_path or "${EXO_MODEL_ID}"
    placeholders = {} if context.model_path else {
        "EXO_MODEL_ID": f"exo's model id for {plan.request.model.name} at {plan.request.precision.weights} "
                        f"(`curl http://ADDR:{EXO_PORT}/models` lists them); or export with --model-path"}
    script = (context.assets or {}).get("exo_create_instance.py")
    if script is None:
        raise ExportRefused("exo: the create_instance.py script is missing from the installation", field="--to")
    files: dict[str, str] = {"create_instance.py": script}
    launches: list[Launch] = []
    steps = [f"- Start exo on every machine (`exo`); they find each other and elect a master. Check "
             f"`curl http://ADDR:{EXO_PORT}/node_id` answers on each."]
    for replica in plan.replicas:
        sharding = _sharding(replica, target)
        devices = [d for s in replica.stages for d in s.devices]
        nodes = []
        for device in devices:
            stage = next(s for s in replica.stages if device in s.devices)
            start, end = (stage.layers if sharding == "Pipeline" else (0, context.model.num_layers))
            machine = machines[device.node]
            placeholders.update(address_placeholders([machine]))
            nodes.append({"machine": machine.name, "address": address_of(machine), "start_layer": start, "end_layer": end})
        # Tensor sharding was planned over RDMA (Thunderbolt 5 links fit for it): exo's MlxJaccl.
        meta = "MlxJaccl" if sharding == "Tensor" else "MlxRing"
        spec = {"model_id": model_id, "sharding": sharding, "instance_meta": meta, "n_layers": context.model.num_layers,
                "api_port": EXO_PORT, "nodes": nodes}
        name = f"replica-{replica.index}/instance.json"
        files[name] = json.dumps(spec, indent=2) + "\n"
        head = machines[devices[0].node]
        argv = ("python3", "create_instance.py", name, "--api", f"http://{address_of(head)}:{EXO_PORT}")
        launch = Launch(head.name, f"replica {replica.index}: create the exo instance", argv, ())
        files[f"replica-{replica.index}/create.sh"] = to_script(launch, placeholders=placeholders, header=[
            f"{launch.role} ({sharding}, {len(nodes)} machine{'s' if len(nodes) > 1 else ''}); run from the bundle's folder "
            "(where README.md is) on any machine that reaches exo."])
        launches.append(launch)
        steps.append(f"- Replica {replica.index}: `replica-{replica.index}/create.sh` finds each machine's exo node id, asks "
                     f"exo for a {sharding} placement over exactly these machines, sets each node's layers to the plan's "
                     f"and creates it (POST /instance), then waits until it is ready.")
    book = Runbook(f"exo launch: {plan.request.model.name} on {plan.inventory.name}",
                   plan_intro(plan, "exo", "exo's API at b5375f8 (src/exo/api/main.py)"))
    book.add("What runs where", layout_rows(plan))
    book.add("Before you start", [
        "- The same exo release on every Mac, on the same network (or Thunderbolt); exo downloads the model itself.",
        "- exo's master accepts a placement only after checking the total memory, not each node's "
        "(src/exo/master: 'TODO: validate against topology'): the plan's per-node figures are the check.",
        "", *placeholder_lines(placeholders)])
    book.add("Steps, in order", steps)
    book.add("The same by hand", [
        f"1. `curl http://ADDR:{EXO_PORT}/node_id` on each machine of a replica.",
        f"2. `curl 'http://ADDR:{EXO_PORT}/instance/previews?model_id=MODEL&node_ids=ID1&node_ids=ID2'`: take the preview "
        "whose `sharding` and `instance_meta` are the instance.json's and whose `nodeToRunner` has exactly those ids.",
        "3. In its `instance`, set each runner's `startLayer`/`endLayer` (under `shardAssignments.runnerToShard`) to the "
        "instance.json range of that runner's node.",
        f"4. `curl -X POST http://ADDR:{EXO_PORT}/instance -H 'Content-Type: application/json' -d '{{\"instance\": ...}}'`, "
        f"then `curl 'http://ADDR:{EXO_PORT}/instance/await?model_id=MODEL&timeout_seconds=300'`."])
    book.add("Ports", [f"- exo API and OpenAI-compatible chat: {EXO_PORT} on every machine."])
    book.add("Health checks", [f"- `curl http://ADDR:{EXO_PORT}/state` shows each runner's status; the instance serves once "
                               f"every runner of it is ready.",
                               f"- `curl http://ADDR:{EXO_PORT}/v1/chat/completions -H 'Content-Type: application/json' -d "
                               "'{\"model\": \"MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                               "\"max_tokens\": 1}'` answers once it is loaded."])
    book.add("How to tell it is up, and that it is the plan", expectation_lines(plan, "exo"))
    files["README.md"] = book.render()
    return Bundle(target, dict(sorted(files.items())), tuple(launches))


def to_mlxlm(plan: ServePlan, context: ExportContext) -> Bundle:
    """The mlx-lm bundle: per replica a hostfile and the mlx.launch command (or one mlx_lm.server)."""
    target = "mlx-lm"
    _common(plan, context, target)
    machines = machines_by_name(plan)
    model_arg, placeholders = model_reference(plan, context)
    if plan.request.precision.weights.startswith("mlx-") and not context.model_path:
        bits = plan.request.precision.weights.removeprefix("mlx-")
        placeholders = {"MLX_MODEL": f"an MLX conversion of {plan.request.model.name} at {bits} (mlx_lm.convert -q, or an "
                                     f"mlx-community repository), the same path on every Mac; or export with --model-path"}
        model_arg = "${MLX_MODEL}"
    ports = PortBook()
    files: dict[str, str] = {}
    launches: list[Launch] = []
    endpoints: list[tuple[int, str]] = []
    steps: list[str] = []
    for replica in plan.replicas:
        sharding = _sharding(replica, target)
        devices = [d for s in replica.stages for d in s.devices]
        if sharding == "Pipeline" and len(replica.stages) > 1:
            size = len(replica.stages)
            counts = {s.layers[1] - s.layers[0] for s in replica.stages}
            if len(counts) > 1 or context.model.num_layers % size:
                raise ExportRefused(f"mlx-lm: replica {replica.index} splits {context.model.num_layers} layers unevenly "
                                    f"({[s.layers[1] - s.layers[0] for s in replica.stages]}); mlx-lm's pipeline gives every "
                                    f"rank len(layers) // {size} and takes no ranges", field="--to")
            devices = list(reversed(devices))  # rank 0 holds the last layers
        head = machines[devices[0].node]
        placeholders.update(address_placeholders([head]))
        api = ports.take(head, "api", MLX_PORT)
        e = replica.engine
        server = ["mlx_lm.server", "--model", model_arg, "--host", "0.0.0.0", "--port", str(api),
                  "--decode-concurrency", str(e.max_sequences), "--prefill-step-size", str(e.batch_tokens)]
        if len(devices) == 1:
            argv = tuple(server)
        else:
            hosts = []
            for d in devices:
                m = machines[d.node]
                ip, need = ip_literal_of(m, "mlx's ring backend connects the ranks to these")
                placeholders.update(need)
                hosts.append({"ssh": m.address or m.name, "ips": [ip]})
            hostfile = f"replica-{replica.index}/hosts.json"
            text = json.dumps(hosts, indent=2) + "\n"
            writes: tuple[tuple[str, str], ...] = ()
            if "${" in text:
                writes = ((hostfile, text),)  # the script writes it once the addresses are set
            else:
                files[hostfile] = text
            if sharding == "Tensor":
                files.pop(hostfile, None)
                # Planned over RDMA: mlx's jaccl backend, its hostfile (with each Mac's RDMA devices)
                # written by mlx.distributed_config from the Thunderbolt links.
                argv = ("sh", "-c", f"mlx.distributed_config --backend jaccl --over thunderbolt --hosts "
                        f"{','.join(h['ssh'] for h in hosts)} --output {hostfile} && "
                        f"mlx.launch --hostfile {hostfile} --backend jaccl --env MLX_METAL_FAST_SYNCH=1 -- "
                        f"{' '.join(_double_quoted(a) for a in server)}")
                writes = ()
            else:
                argv = ("mlx.launch", "--hostfile", hostfile, "--backend", "ring", "--",
                        *server, *(["--pipeline"] if sharding == "Pipeline" else []))
        launch = Launch(head.name, f"replica {replica.index}: mlx_lm.server" + (f" over {len(devices)} Macs ({sharding})"
                                                                              if len(devices) > 1 else ""), argv,
                        writes=writes if len(devices) > 1 else ())
        files[f"replica-{replica.index}/launch.sh"] = to_script(launch, placeholders=placeholders, header=[
            f"{launch.role}; run from the bundle's folder on {head.name}" + (" (mlx.launch reaches every rank, this one "
                                                                           "included, over ssh)."
                                                                   if len(devices) > 1 else ".")])
        launches.append(launch)
        endpoints.append((replica.index, f"{address_of(head)}:{api}"))
        steps.append(f"- Replica {replica.index}: `replica-{replica.index}/launch.sh` on {head.name}; rank 0 serves "
                     f"`http://{address_of(head)}:{api}`.")
    files.update(balancer_files(endpoints))
    book = Runbook(f"mlx-lm launch: {plan.request.model.name} on {plan.inventory.name}",
                   plan_intro(plan, "mlx-lm", "mlx_lm.server flags of mlx-lm 0.32.2, the release of that commit's line"))
    book.add("What runs where", layout_rows(plan) + ["", "mlx-lm's pipeline puts the last layers on rank 0: the hostfile "
                                                     "lists the machines from the last stage to the first."])
    book.add("Before you start", [
        "- The same mlx and mlx-lm on every Mac, passwordless ssh from the launching Mac to the others, and the model "
        "(an MLX-converted repository with model.safetensors.index.json for a pipeline) at the same path on each.",
        "- mlx.launch starts every rank over ssh, the launching Mac's own included, and runs `mlx_lm.server` at the "
        "path it has on the launching Mac: install it at the same path on every Mac.",
        "- `ring` runs over TCP on any network; Thunderbolt 5 with RDMA (macOS 26.2+, `rdma_ctl enable` from recovery) "
        "runs `--backend jaccl`, which mlx's docs recommend for tensor parallelism and which a tensor-parallel replica "
        "here uses (its speed was planned at RDMA's few-microsecond latency).",
        "", *placeholder_lines(placeholders)])
    book.add("Steps, in order", steps + (["- Then the load balancer in `load-balancer/` (nginx)."] if len(endpoints) > 1 else []))
    book.add("Ports", [f"- API: {ep} (replica {i})" for i, ep in endpoints] + ["- mlx ring: 32323 and up between the Macs."])
    book.add("Health checks", ["- `curl -fsS http://ADDR:PORT/v1/models` lists the model once it is loaded."])
    book.add("How to tell it is up, and that it is the plan", expectation_lines(plan, "mlx-lm"))
    files["README.md"] = book.render()
    return Bundle(target, dict(sorted(files.items())), tuple(launches))
