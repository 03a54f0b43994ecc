#!/usr/bin/env bash
# replica 1: create the exo instance (Pipeline, 2 machines); run from the bundle's folder (where README.md is) on any machine that reaches exo.
set -euo pipefail

exec python3 create_instance.py replica-1/instance.json --api http://studio-3.local:52415
