#!/usr/bin/env bash
# replica 0, node-rank 1 of 2 (headless): run on hgx-2.
# vLLM 0.33.0.
set -euo pipefail

export CUDA_DEVICE_ORDER=PCI_BUS_ID
export CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7
export VLLM_PP_LAYER_PARTITION=63,63

exec vllm serve meta-llama/Llama-3.1-405B --tensor-parallel-size 8 --pipeline-parallel-size 2 \
  --max-model-len 8192 --max-num-seqs 1024 --max-num-batched-tokens 8192 --block-size 16 \
  --gpu-memory-utilization 0.92 --kv-cache-dtype bfloat16 --dtype bfloat16 --nnodes 2 --node-rank 1 \
  --master-addr 10.0.0.1 --master-port 29501 --headless
