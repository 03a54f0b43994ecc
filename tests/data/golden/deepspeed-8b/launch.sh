#!/usr/bin/env bash
# Run from this folder on hgx-1; DeepSpeed 0.19.6.
set -euo pipefail

[ -n "${TRAIN_SCRIPT:-}" ] || { echo 'set TRAIN_SCRIPT: your training script: it adds DeepSpeed'"'"'s arguments (deepspeed.add_config_arguments(parser)) and calls deepspeed.initialize(args=args, model=..., model_parameters=...)' >&2; exit 2; }

exec deepspeed --hostfile hostfile --include 10.0.0.1:0,1,2,3,4,5,6,7@10.0.0.2:0,1,2,3,4,5,6,7 \
  --master_addr 10.0.0.1 --master_port 29500 "${TRAIN_SCRIPT}" --deepspeed --deepspeed_config ds_config.json
