#!/usr/bin/env bash
# Run from this folder on dgx; DeepSpeed 0.19.6.
set -euo pipefail

[ -n "${DGX_ADDR:-}" ] || { echo 'set DGX_ADDR: the address of dgx (host name or IP the other machines reach)' >&2; exit 2; }
[ -n "${TRAIN_SCRIPT:-}" ] || { echo 'set TRAIN_SCRIPT: your training script: it adds DeepSpeed'"'"'s arguments (deepspeed.add_config_arguments(parser)) and calls deepspeed.initialize(args=args, model=..., model_parameters=...)' >&2; exit 2; }

exec deepspeed --hostfile hostfile --include dgx:0,1,2,3,4,5,6,7 --master_addr "${DGX_ADDR}" \
  --master_port 29500 "${TRAIN_SCRIPT}" --deepspeed --deepspeed_config ds_config.json
