#!/usr/bin/env bash
# replica 0: lends studio/gpu0 to gpu-box.
# ggml-rpc-server is a proof of concept upstream calls fragile and insecure: never run it on an open network (tools/rpc/README.md). Keep these machines on a private network.
set -euo pipefail

[ -n "${STUDIO_IP:-}" ] || { echo 'set STUDIO_IP: the IP address of studio on the private network (ggml-rpc-server binds only to an IPv4 literal, tools/rpc)' >&2; exit 2; }

exec ggml-rpc-server -H "${STUDIO_IP}" -p 50052 -d MTL0 -c
