#!/usr/bin/env bash
# replica 1: mlx_lm.server over 2 Macs (Pipeline); run from the bundle's folder on studio-4 (mlx.launch reaches every rank, this one included, over ssh).
set -euo pipefail

[ -n "${MLX_MODEL:-}" ] || { echo 'set MLX_MODEL: an MLX conversion of llama-3.1-405b at 8bit (mlx_lm.convert -q, or an mlx-community repository), the same path on every Mac; or export with --model-path' >&2; exit 2; }
[ -n "${STUDIO_3_IP:-}" ] || { echo 'set STUDIO_3_IP: the IP address of studio-3 on the private network (mlx'"'"'s ring backend connects the ranks to these)' >&2; exit 2; }
[ -n "${STUDIO_4_IP:-}" ] || { echo 'set STUDIO_4_IP: the IP address of studio-4 on the private network (mlx'"'"'s ring backend connects the ranks to these)' >&2; exit 2; }

cat > replica-1/hosts.json <<PLANNER_EOF
[
  {
    "ssh": "studio-4.local",
    "ips": [
      "${STUDIO_4_IP}"
    ]
  },
  {
    "ssh": "studio-3.local",
    "ips": [
      "${STUDIO_3_IP}"
    ]
  }
]
PLANNER_EOF

exec mlx.launch --hostfile replica-1/hosts.json --backend ring -- mlx_lm.server --model "${MLX_MODEL}" \
  --host 0.0.0.0 --port 8080 --decode-concurrency 32 --prefill-step-size 2048 --pipeline
