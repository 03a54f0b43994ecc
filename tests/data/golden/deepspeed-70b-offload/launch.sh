#!/usr/bin/env bash
# Run from this folder on dgx; DeepSpeed 0.19.6.
set -euo pipefail

: "${DGX_ADDR:?set DGX_ADDR: the address of dgx (host name or IP the other machines reach)}"
: "${TRAIN_SCRIPT:?set TRAIN_SCRIPT: your training script, which calls deepspeed.initialize(..., config='ds_config.json')}"

exec deepspeed --hostfile hostfile --include dgx:0,1,2,3,4,5,6,7 --master_addr "${DGX_ADDR}" \
  --master_port 29500 "${TRAIN_SCRIPT}" --deepspeed --deepspeed_config ds_config.json
