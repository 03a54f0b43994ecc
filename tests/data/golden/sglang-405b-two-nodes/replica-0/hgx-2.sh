#!/usr/bin/env bash
# replica 0, node-rank 1 of 2: run on hgx-2.
# SGLang 0.5.23.
set -euo pipefail

export CUDA_DEVICE_ORDER=PCI_BUS_ID
export CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7
export SGLANG_PP_LAYER_PARTITION=63,63

exec python -m sglang.launch_server --model-path meta-llama/Llama-3.1-405B --tp-size 8 --pp-size 2 \
  --context-length 8192 --max-running-requests 512 --chunked-prefill-size 8192 --page-size 1 \
  --mem-fraction-static 0.799 --kv-cache-dtype bf16 --dtype bfloat16 --nnodes 2 --node-rank 1 \
  --dist-init-addr 10.0.0.1:50000 --host 0.0.0.0 --port 30000
