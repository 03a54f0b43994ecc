#!/usr/bin/env bash
# replica 1: run on dgx.
# vLLM 0.33.0.
set -euo pipefail

export CUDA_DEVICE_ORDER=PCI_BUS_ID
export CUDA_VISIBLE_DEVICES=2,3

exec vllm serve meta-llama/Llama-3.1-70B --tensor-parallel-size 2 --pipeline-parallel-size 1 \
  --max-model-len 8192 --max-num-seqs 1024 --max-num-batched-tokens 8192 --block-size 16 \
  --gpu-memory-utilization 0.92 --kv-cache-dtype fp8 --quantization fp8 --host 0.0.0.0 --port 8001
