#!/usr/bin/env bash
# replica 0: lends studio/gpu0 to gpu-box.
# ggml-rpc-server is a proof of concept upstream calls fragile and insecure: never run it on an open network (tools/rpc/README.md). Keep these machines on a private network.
set -euo pipefail

: "${STUDIO_ADDR:?set STUDIO_ADDR: the address of studio (host name or IP the other machines reach)}"

exec ggml-rpc-server -H "${STUDIO_ADDR}" -p 50052 -d MTL0 -c
