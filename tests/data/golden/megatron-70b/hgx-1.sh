#!/usr/bin/env bash
# node-rank 0 of 2: run on hgx-1 from a Megatron-LM checkout (d98e8a6).
set -euo pipefail

[ -n "${DATA_PATH:-}" ] || { echo 'set DATA_PATH: the Megatron-preprocessed dataset prefix (tools/preprocess_data.py)' >&2; exit 2; }
[ -n "${LR:-}" ] || { echo 'set LR: peak learning rate' >&2; exit 2; }
[ -n "${SAVE_DIR:-}" ] || { echo 'set SAVE_DIR: checkpoint directory' >&2; exit 2; }
[ -n "${SAVE_INTERVAL:-}" ] || { echo 'set SAVE_INTERVAL: optimizer steps between checkpoints (Megatron requires it with --save)' >&2; exit 2; }
[ -n "${TRAIN_ITERS:-}" ] || { echo 'set TRAIN_ITERS: optimizer steps to run' >&2; exit 2; }

export CUDA_DEVICE_ORDER=PCI_BUS_ID
export CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7
export CUDA_DEVICE_MAX_CONNECTIONS=1

exec torchrun --nproc_per_node 8 --nnodes 2 --node_rank 0 --master_addr 10.0.0.1 --master_port 6000 pretrain_gpt.py \
  --tensor-model-parallel-size 8 --pipeline-model-parallel-size 2 --sequence-parallel \
  --recompute-granularity selective --micro-batch-size 1 --global-batch-size 64 --num-layers 80 \
  --hidden-size 8192 --num-attention-heads 64 --seq-length 4096 --max-position-embeddings 131072 \
  --ffn-hidden-size 28672 --group-query-attention --num-query-groups 8 --position-embedding-type rope \
  --normalization RMSNorm --swiglu --untie-embeddings-and-output-weights --disable-bias-linear \
  --bf16 --tokenizer-type HuggingFaceTokenizer --tokenizer-model meta-llama/Llama-3.1-70B \
  --data-path "${DATA_PATH}" --train-iters "${TRAIN_ITERS}" --lr "${LR}" --save "${SAVE_DIR}" \
  --save-interval "${SAVE_INTERVAL}"
