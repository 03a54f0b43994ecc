#!/usr/bin/env python3
"""Create the planned exo instance: python3 create_instance.py replica-N/instance.json --api http://HOST:52415

1. GET /node_id on every machine of the plan gives its exo node id.
2. GET /instance/previews?model_id=...&node_ids=... gives exo's own placements over those nodes;
   the one with the plan's sharding (Pipeline or Tensor) and instance_meta (MlxRing, or MlxJaccl for RDMA) over exactly these nodes is taken.
3. Pipeline: each runner's startLayer/endLayer are set to the plan's range for its node. exo's
   ranks pass activations in rank order, so the plan's stage order must be exo's rank order;
   when it is not, the script stops and says so (nothing is created).
4. POST /instance creates it; the script then waits until exo's state lists it (exo downloads and
   loads the model after that: GET /state shows its runners).
"""
import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def call(url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode()


def pick(mapping, *names):
    for name in names:
        if name in mapping:
            return mapping[name]
    raise KeyError(names[0])


def untag(value):
    """exo serialises tagged unions as {"ClassName": {...}}."""
    (tag, inner), = value.items()
    return tag, inner


def expand(value):
    """${NAME} in the plan's file comes from the environment (the README lists each)."""
    if isinstance(value, str):
        def one(match):
            if match.group(1) not in os.environ:
                sys.exit(f"set {match.group(1)} first (README.md lists what to put there)")
            return os.environ[match.group(1)]
        return re.sub(r"\$\{([A-Z][A-Z0-9_]*)\}", one, value)
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--api", required=True, help="exo API of any machine, e.g. http://10.0.0.5:52415")
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = expand(json.load(f))
    port = spec["api_port"]
    ids = []
    for node in spec["nodes"]:
        node_id = json.loads(call(f"http://{node['address']}:{port}/node_id"))
        ids.append(node_id)
        print(f"{node['machine']}: exo node {node_id}")
    query = urllib.parse.urlencode([("model_id", spec["model_id"]), *[("node_ids", i) for i in ids]])
    previews = json.loads(call(f"{args.api}/instance/previews?{query}", timeout=120))["previews"]
    chosen = None
    for preview in previews:
        instance = preview.get("instance")
        if not instance or preview.get("sharding") != spec["sharding"] or preview.get("instance_meta") != spec["instance_meta"]:
            continue
        tag, body = untag(instance)
        assignments = pick(body, "shardAssignments", "shard_assignments")
        nodes = pick(assignments, "nodeToRunner", "node_to_runner")
        if sorted(nodes) == sorted(ids):
            chosen = instance
            break
    if chosen is None:
        errors = sorted({p.get("error") for p in previews if p.get("error")})
        sys.exit(f"exo offers no {spec['sharding']}/{spec['instance_meta']} placement over exactly these machines: {errors or 'none offered'}")
    tag, body = untag(chosen)
    assignments = pick(body, "shardAssignments", "shard_assignments")
    node_to_runner = pick(assignments, "nodeToRunner", "node_to_runner")
    runner_to_shard = pick(assignments, "runnerToShard", "runner_to_shard")
    if spec["sharding"] == "Pipeline":
        by_rank = {}
        for node_id, runner in node_to_runner.items():
            _, shard = untag(runner_to_shard[runner])
            by_rank[pick(shard, "deviceRank", "device_rank")] = node_id
        exo_order = [by_rank[r] for r in sorted(by_rank)]
        if exo_order != ids:
            names = {i: n["machine"] for i, n in zip(ids, spec["nodes"])}
            sys.exit("exo ranks the machines " + " -> ".join(names[i] for i in exo_order) + "; the plan's stages run "
                     + " -> ".join(n["machine"] for n in spec["nodes"]) + ". Re-plan with that order, or connect the "
                     "machines so exo's ring follows the plan.")
        for node_id, node in zip(ids, spec["nodes"]):
            shard_tag, shard = untag(runner_to_shard[node_to_runner[node_id]])
            for camel, snake, value in (("startLayer", "start_layer", node["start_layer"]),
                                        ("endLayer", "end_layer", node["end_layer"])):
                shard[camel if camel in shard else snake] = value
            if pick(shard, "nLayers", "n_layers") != spec["n_layers"]:
                sys.exit(f"exo's model card has {pick(shard, 'nLayers', 'n_layers')} layers; the plan has {spec['n_layers']}")
    instance_id = pick(body, "instanceId", "instance_id")
    call(f"{args.api}/instance", {"instance": chosen}, timeout=60)
    for _ in range(120):
        try:
            call(f"{args.api}/instance/{instance_id}")
            break
        except urllib.error.HTTPError:
            time.sleep(1)
    else:
        sys.exit(f"exo accepted the instance but does not list {instance_id}; see GET {args.api}/state")
    print(f"created instance {instance_id}; exo now downloads and loads {spec['model_id']} "
          f"(GET {args.api}/state shows its runners)")


if __name__ == "__main__":
    main()
