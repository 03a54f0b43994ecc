"""Pieces every serving bundle shares: the stage layer counts, the table of what runs where,
the start-up lines and speeds the plan predicts, and a load balancer over several replicas."""

from __future__ import annotations

from planner.schemas.plan import ReplicaOut, ServePlan


def replica_layers(replica: ReplicaOut) -> list[int]:
    """Decoder layers per stage, in order."""
    return [s.layers[1] - s.layers[0] for s in replica.stages]


def layout_rows(plan: ServePlan) -> list[str]:
    """One row per stage: replica, machine(s), devices, layers."""
    rows = ["| replica | stage | layers | devices | users |", "|---|---|---|---|---|"]
    for r in plan.replicas:
        for s in r.stages:
            devices = ", ".join(f"{d.id} ({d.type})" for d in s.devices)
            rows.append(f"| {r.index} | {s.index} | {s.layers[0]}-{s.layers[1] - 1} | {devices} | {r.users} |")
    return rows


def expectation_lines(plan: ServePlan, engine: str) -> list[str]:
    """What the engine prints at start-up when it runs as planned, and the speed to expect."""
    lines: list[str] = []
    for r in plan.replicas:
        ctx = r.engine.context_tokens
        if engine == "vllm":
            lines.append(f"- Replica {r.index} logs `GPU KV cache size: {r.kv_cache_tokens:,} tokens` and "
                         f"`Maximum concurrency for {ctx:,} tokens per request: {r.max_concurrency:.2f}x` (within a few "
                         f"percent; a much smaller figure means less free memory than planned).")
        elif engine == "sglang":
            lines.append(f"- Replica {r.index} logs `max_total_num_tokens={r.kv_cache_tokens}` (within a few percent) and "
                         f"`max_running_requests={r.engine.max_sequences}`.")
        elif engine == "llama.cpp":
            pool = llama_cpp_pool_tokens(r)
            lines.append(f"- Replica {r.index} logs `llama_context: n_ctx = {pool}` and `n_slots = {r.engine.max_sequences}, "
                         f"n_ctx_slot = {pool}, kv_unified = 'true'`: one pool of {pool:,} tokens ({r.users} x {ctx:,}) shared "
                         f"by the slots; the devices have room for up to {r.kv_cache_tokens:,}. Each device's KV buffer "
                         f"(`CUDA0 KV buffer size`, `RPC0[host:port] KV buffer size`) follows its layers.")
        else:
            lines.append(f"- Replica {r.index} answers requests of up to {ctx:,} tokens for {r.users} users.")
        lines.append(f"  Expected: {r.decode_tokens_per_s_per_user:.1f} tokens/s per user with {r.users} users decoding, "
                     f"{r.time_to_first_token_s:.2f} s to the first token.")
    return lines


def llama_cpp_pool_tokens(replica: ReplicaOut) -> int:
    """-c of a llama.cpp replica: one unified pool of users x context cells, padded to 256 as
    llama.cpp pads n_ctx (src/llama-context.cpp), the KV the plan counted."""
    cells = replica.users * replica.engine.context_tokens
    return -(-cells // 256) * 256


BALANCER_PORT = 8090


def balancer_port(endpoints: list[tuple[int, str]]) -> int:
    """A port for the load balancer that no replica listens on."""
    used = {int(ep.rsplit(":", 1)[1]) for _, ep in endpoints}
    port = BALANCER_PORT
    while port in used:
        port += 1
    return port


def balancer_files(endpoints: list[tuple[int, str]]) -> dict[str, str]:
    """An nginx configuration spreading requests over the replicas (only with more than one)."""
    if len(endpoints) < 2:
        return {}
    servers = "\n".join(f"    server {ep};  # replica {i}" for i, ep in endpoints)
    template = "${" in servers
    port = balancer_port(endpoints)
    run = (f"# envsubst < load-balancer/nginx.conf.template > nginx.conf && nginx -p $PWD -c $PWD/nginx.conf  (serves :{port})\n"
           if template else f"# nginx -p $PWD -c $PWD/load-balancer/nginx.conf  (serves :{port}, on any machine)\n")
    text = ("# Spreads requests over the plan's replicas; each replica is a full copy of the model.\n" + run +
            "pid nginx.pid;\nerror_log stderr;\n"
            "events {}\nhttp {\n  access_log off;\n  upstream replicas {\n    least_conn;\n" + servers + "\n  }\n"
            f"  server {{\n    listen {port};\n    location / {{\n      proxy_pass http://replicas;\n"
            "      proxy_http_version 1.1;\n      proxy_buffering off;  # streamed tokens pass through at once\n"
            "      proxy_read_timeout 3600s;\n    }\n  }\n}\n")
    return {f"load-balancer/nginx.conf{'.template' if template else ''}": text}
