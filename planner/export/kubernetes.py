"""`plan export --to kubernetes`: manifests for a vLLM or SGLang serving plan. A replica on one
machine is a Deployment (apps/v1); a replica over several machines is a LeaderWorkerSet
(leaderworkerset.x-k8s.io/v1, LWS v0.10): `size` pods counting the leader, one worker template
for all workers, LWS_LEADER_ADDRESS and LWS_WORKER_INDEX injected into every container
(api/leaderworkerset/v1/leaderworkerset_types.go, pkg/utils/pod/pod_utils.go); each pod asks for
its machine's GPUs (nvidia.com/gpu, amd.com/gpu) and is pinned to the GPU model by the label NVIDIA
GPU Feature Discovery sets, nvidia.com/gpu.product: the driver's name with characters outside
[A-Za-z0-9-_. ] dropped and spaces made '-' (k8s-device-plugin internal/lm/resource.go). The
engine commands are the same as the vllm and sglang exports', with the leader's address and the
worker index from LWS. Identical replicas share one object with `replicas: N`."""

from __future__ import annotations

import re

import yaml

from planner.export import sglang, vllm
from planner.export.bundle import Bundle, ExportRefused
from planner.export.context import (
    ExportContext,
    machine_slices,
    model_reference,
    require_plan,
    require_vendors,
)
from planner.export.formats import engine_kv_dtype, engine_weight_flags
from planner.export.gpu_server import check_one_instance
from planner.export.runbook import Runbook, plan_intro
from planner.export.serving import expectation_lines, layout_rows
from planner.schemas.hardware import HardwareSpec
from planner.schemas.plan import ServePlan

IMAGES = {"vllm": "vllm/vllm-openai:v{version}", "sglang": "lmsysorg/sglang:v{version}"}  # the engines' published images
RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}
LEADER = "$(LWS_LEADER_ADDRESS)"


class _Dumper(yaml.SafeDumper):
    """Every object written out in full: manifests read without YAML anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def gpu_product_label(spec: HardwareSpec) -> str | None:
    """The nvidia.com/gpu.product value GPU Feature Discovery gives this GPU (None when the driver's name is unknown)."""
    if spec.vendor != "nvidia" or not spec.nvml_name:
        return None
    return "-".join(re.sub(r"[^A-Za-z0-9\-_. ]", "", spec.nvml_name).split())


def _container(engine: str, argv: list[str], env: list[tuple[str, str]], image: str, gpus: int, resource: str,
               api: int | None) -> dict:
    container: dict = {"name": engine, "image": image, "command": argv,
                       "env": [{"name": k, "value": v} for k, v in env]
                       + [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token",
                                                                              "optional": True}}}],
                       "resources": {"limits": {resource: str(gpus)}},
                       "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}
    if api is not None:
        container["ports"] = [{"name": "http", "containerPort": api}]
        container["readinessProbe"] = {"httpGet": {"path": "/health", "port": api}, "periodSeconds": 10,
                                       "failureThreshold": 360}
    return container


def _pod(container: dict, selector: dict[str, str], labels: dict[str, str]) -> dict:
    spec: dict = {"containers": [container], "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]}
    if selector:
        spec["nodeSelector"] = selector
    return {"metadata": {"labels": labels}, "spec": spec}


def to_kubernetes(plan: ServePlan, context: ExportContext) -> Bundle:
    """Manifests (Deployments, LeaderWorkerSets, Services) for the plan's engine."""
    target = "kubernetes"
    require_plan(plan, target)
    engine = plan.request.engine.id if isinstance(plan, ServePlan) else plan.request.engine.id
    if not isinstance(plan, ServePlan) or engine not in IMAGES:
        raise ExportRefused(f"kubernetes: manifests are written for vLLM and SGLang serving plans; this plan is for "
                            f"{plan.request.engine.name}", field="--to")
    require_vendors(plan, context, target, ("nvidia", "amd"))
    server = vllm.SERVER if engine == "vllm" else sglang.SERVER
    model_arg, _ = model_reference(plan, context)
    if model_arg.startswith("${"):
        raise ExportRefused("kubernetes: the pods need the model's Hugging Face id or a path in their image or volume; "
                            "give --model-path", field="--model-path")
    weight_flags, requirement = engine_weight_flags(engine, plan.request.precision.weights, context)
    kv = engine_kv_dtype(engine, plan.request.precision.kv_cache, weights=plan.request.precision.weights)
    image = IMAGES[engine].format(version=plan.request.engine.version)
    api, rendezvous = server.api_port, server.rendezvous_port
    groups: dict[tuple, list[int]] = {}
    shapes: dict[tuple, tuple] = {}
    for replica in plan.replicas:
        check_one_instance(replica, server)
        slices = machine_slices(plan, replica, target, equal=True)
        spec = context.hardware[replica.stages[0].devices[0].type]
        base, env = server.replica_argv(replica, model_arg, kv, weight_flags)
        key = (tuple(base), tuple(env), len(slices), len(slices[0].devices), spec.id)
        groups.setdefault(key, []).append(replica.index)
        shapes[key] = (base, env, len(slices), len(slices[0].devices), spec)
    docs: list[dict] = []
    name_base = re.sub(r"[^a-z0-9-]+", "-", f"{engine}-{plan.request.model.name}".lower()).strip("-")[:40].rstrip("-")
    rows: list[str] = []
    for n, (key, replicas) in enumerate(groups.items()):
        base, env, nnodes, gpus, spec = shapes[key]
        name = f"{name_base}-{n}"
        label = gpu_product_label(spec)
        selector = {"nvidia.com/gpu.product": label} if label else {}
        resource = RESOURCE[spec.vendor]
        if nnodes == 1:
            argv = server.node_argv(base, nnodes=1, rank="0", head="", rendezvous_port=0, api_port=api, worker=False)
            labels = {"app": name}
            docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                         "spec": {"replicas": len(replicas), "selector": {"matchLabels": labels},
                                  "template": _pod(_container(engine, argv, env, image, gpus, resource, api), selector, labels)}})
            service_selector = labels
        else:
            leader = server.node_argv(base, nnodes=nnodes, rank="0", head=LEADER, rendezvous_port=rendezvous, api_port=api,
                                      worker=False)
            worker = server.node_argv(base, nnodes=nnodes, rank="$(LWS_WORKER_INDEX)", head=LEADER,
                                      rendezvous_port=rendezvous, api_port=api, worker=True)
            worker_api = api if engine == "sglang" else None
            docs.append({"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": name},
                         "spec": {"replicas": len(replicas), "leaderWorkerTemplate": {
                             "size": nnodes, "restartPolicy": "RecreateGroupOnPodRestart",
                             "leaderTemplate": _pod(_container(engine, leader, env, image, gpus, resource, api), selector,
                                                    {"role": "leader"}),
                             "workerTemplate": _pod(_container(engine, worker, env, image, gpus, resource, worker_api),
                                                    selector, {"role": "worker"})}}})
            service_selector = {"leaderworkerset.sigs.k8s.io/name": name, "role": "leader"}
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                     "spec": {"selector": service_selector, "ports": [{"name": "http", "port": api, "targetPort": api}]}})
        kind = "Deployment" if nnodes == 1 else f"LeaderWorkerSet (size {nnodes})"
        rows.append(f"- `{name}`: {kind} with `replicas: {len(replicas)}` (the plan's replica{'s' if len(replicas) > 1 else ''} "
                    f"{', '.join(map(str, replicas))}); {gpus} x {spec.name} per pod"
                    + (f", nodeSelector nvidia.com/gpu.product={label}" if label else
                       " (no GPU product label known: add a nodeSelector for your cluster)") + f"; Service `{name}`:{api}.")
    text = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=1000) for d in docs)
    book = Runbook(f"Kubernetes manifests: {plan.request.model.name} on {plan.inventory.name} ({engine})",
                   plan_intro(plan, "kubernetes", f"image {image}; LeaderWorkerSet v1 (LWS v0.10)"))
    book.add("What runs where", layout_rows(plan) + ["", *rows])
    book.add("Before you start", [
        "- GPU nodes labelled by NVIDIA GPU Feature Discovery (GPU Operator) or AMD's device plugin; the LeaderWorkerSet "
        "controller installed for multi-node replicas (kubectl apply --server-side -f the LWS release manifest).",
        f"- The model: `{model_arg}`." + (f" {requirement}" if requirement else "")
        + " Pods download it unless the image or a volume holds it; a Secret `hf-token` (key `token`) is used if present.",
        "- Pods of one LeaderWorkerSet group talk over the pod network (NCCL); give them the fabric the plan assumed "
        "(host networking or an RDMA network attachment) for its speed."])
    book.add("Steps, in order", ["- `kubectl apply -f manifests.yaml`.",
                                 "- `kubectl get pods -w` until every pod is Ready (the readiness probe is /health)."])
    book.add("Ports", [f"- Each Service answers on {api}; put an Ingress or a load balancer over the Services of several groups."])
    book.add("Health checks", [f"- `kubectl port-forward svc/NAME {api}` then `curl -fsS localhost:{api}/health`."])
    book.add("How to tell it is up, and that it is the plan", expectation_lines(plan, engine)
             + ["- `kubectl logs` of a leader (or the Deployment's pod) shows these lines."])
    return Bundle(target, {"README.md": book.render(), "manifests.yaml": text}, ())

