#!/usr/bin/env bash
# replica 0: mlx_lm.server over 2 Macs (Pipeline); run from the bundle's folder on studio-2 (mlx.launch reaches every rank, this one included, over ssh).
set -euo pipefail

[ -n "${MLX_MODEL:-}" ] || { echo 'set MLX_MODEL: an MLX conversion of llama-3.1-405b at 8bit (mlx_lm.convert -q, or an mlx-community repository), the same path on every Mac; or export with --model-path' >&2; exit 2; }
[ -n "${STUDIO_1_IP:-}" ] || { echo 'set STUDIO_1_IP: the IP address of studio-1 on the private network (mlx'"'"'s ring backend connects the ranks to these)' >&2; exit 2; }
[ -n "${STUDIO_2_IP:-}" ] || { echo 'set STUDIO_2_IP: the IP address of studio-2 on the private network (mlx'"'"'s ring backend connects the ranks to these)' >&2; exit 2; }

cat > replica-0/hosts.json <<PLANNER_EOF
[
  {
    "ssh": "studio-2.local",
    "ips": [
      "${STUDIO_2_IP}"
    ]
  },
  {
    "ssh": "studio-1.local",
    "ips": [
      "${STUDIO_1_IP}"
    ]
  }
]
PLANNER_EOF

exec mlx.launch --hostfile replica-0/hosts.json --backend ring -- mlx_lm.server --model "${MLX_MODEL}" \
  --host 0.0.0.0 --port 8080 --decode-concurrency 32 --prefill-step-size 2048 --pipeline
