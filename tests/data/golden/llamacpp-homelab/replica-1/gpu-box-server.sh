#!/usr/bin/env bash
# replica 1: llama-server on gpu-box.
# llama.cpp b11434.
# Device order CUDA0,CUDA2 holds layers [63, 1] (+ output on the last).
set -euo pipefail

[ -n "${MODEL_GGUF:-}" ] || { echo 'set MODEL_GGUF: the GGUF file of qwen3-32b (q4_k_m) on the server machine' >&2; exit 2; }

export CUDA_DEVICE_ORDER=PCI_BUS_ID

exec llama-server -m "${MODEL_GGUF}" --device CUDA0,CUDA2 --split-mode layer --tensor-split 62.5,2.5 \
  --n-gpu-layers 65 --fit off --ctx-size 16384 --parallel 4 --kv-unified --batch-size 2048 \
  --ubatch-size 512 --cache-type-k bf16 --cache-type-v bf16 --flash-attn on --host 0.0.0.0 --port 8081
