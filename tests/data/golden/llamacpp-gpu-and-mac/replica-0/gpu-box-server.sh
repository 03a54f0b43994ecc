#!/usr/bin/env bash
# replica 0: llama-server on gpu-box.
# llama.cpp b11434.
# Device order CUDA0,CUDA1,RPC0 holds layers [30, 30, 20] (+ output on the last).
set -euo pipefail

[ -n "${MODEL_GGUF:-}" ] || { echo 'set MODEL_GGUF: the GGUF file of llama-3.1-70b (q4_k_m) on the server machine' >&2; exit 2; }
[ -n "${STUDIO_ADDR:-}" ] || { echo 'set STUDIO_ADDR: the address of studio (host name or IP the other machines reach)' >&2; exit 2; }

export CUDA_DEVICE_ORDER=PCI_BUS_ID

exec llama-server -m "${MODEL_GGUF}" --rpc "${STUDIO_ADDR}:50052" --device CUDA0,CUDA1,RPC0 --split-mode layer \
  --tensor-split 29.5,30,21.5 --n-gpu-layers 81 --fit off --ctx-size 16384 --parallel 4 --kv-unified \
  --batch-size 2048 --ubatch-size 512 --cache-type-k bf16 --cache-type-v bf16 --flash-attn on --host 0.0.0.0 \
  --port 8080
