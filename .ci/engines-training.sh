#!/usr/bin/env bash
# Builds the venv that tests/engines/deepspeed_check.py and megatron_check.py run under:
# DeepSpeed 0.19.8 and megatron-core 0.19.2 (whose PyPI wheel carries megatron/training)
# on CPU torch 2.13.0, Python 3.11. Every package is pinned below, dependencies included.
#
#   PY=$(bash .ci/engines-training.sh [VENV_DIR])   # default VENV_DIR: .venv-engines-train
#
# Prints only the interpreter's absolute path on stdout (pip's output goes to stderr).
# Idempotent: when VENV_DIR already holds exactly these pins it returns in well under a second.
# Needs PyPI only (DeepSpeed's sdist builds with DS_BUILD_OPS=0: Python only, no compiler).
# torch: pip takes the CPU wheel torch-2.13.0+cpu from a --find-links folder when one is
# configured or in ENGINES_FIND_LINKS (default /opt/wheels, where this project's machines
# keep it); elsewhere PyPI's torch 2.13.0 is the CUDA build, several GB.
# ENGINES_PYTHON chooses the base interpreter (default python3; must be 3.11).
set -euo pipefail

VENV="${1:-.venv-engines-train}"
BASE_PY="${ENGINES_PYTHON:-python3}"

PINS="torch==2.13.0
filelock==4.3.1
fsspec==2026.9.0
Jinja2==3.1.6
MarkupSafe==3.0.4
mpmath==1.3.0
networkx==3.6.1
sympy==1.14.0
typing_extensions==4.16.0
setuptools==84.2.1
deepspeed==0.19.8
annotated-types==0.8.0
einops==0.8.2
hjson==3.1.0
msgpack==1.2.4
ninja==1.13.2
numpy==2.4.6
packaging==26.4
psutil==7.2.2
py-cpuinfo==9.0.0
pydantic==2.14.4
pydantic_core==2.50.5
tqdm==4.70.1
typing-inspection==0.4.5
megatron-core==0.19.2
triton==3.9.0"

log() { echo "engines-training: $*" >&2; }

STAMP="$VENV/.engines-training-pins"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PINS" ]; then
    cd "$VENV" && echo "$PWD/bin/python" && exit 0
fi

if ! "$BASE_PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    log "$BASE_PY is not Python 3.11 (the CPU torch 2.13.0 wheel is cp311); set ENGINES_PYTHON"
    exit 1
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$BASE_PY" -m venv "$VENV"
VPY="$(cd "$VENV" && pwd)/bin/python"
CONSTRAINTS="$VENV/engines-training-constraints.txt"
printf '%s\n' "$PINS" > "$CONSTRAINTS"
FIND_LINKS=()  # where a local CPU torch wheel lies (ENGINES_FIND_LINKS overrides)
WHEELS="${ENGINES_FIND_LINKS:-/opt/wheels}"
[ -d "$WHEELS" ] && FIND_LINKS=(--find-links "$WHEELS")
pip_install() {
    "$VPY" -m pip install --disable-pip-version-check "${FIND_LINKS[@]}" -c "$CONSTRAINTS" "$@" >&2
}

# 1. torch first, so nothing later can pull a CUDA build; setuptools builds step 2.
pip_install torch setuptools packaging
# 2. DeepSpeed's sdist imports torch in setup.py: no build isolation; no ops compiled.
DS_BUILD_OPS=0 pip_install --no-build-isolation deepspeed
# 3. megatron-core >= 0.17 (the first with megatron/training on PyPI) declares
#    Requires-Python >= 3.12, yet PyPI has a cp311 wheel of 0.19.2 and its code runs on
#    3.11 (the harness supplies typing.override). triton: megatron.core imports it at
#    module level (no kernel is launched here).
pip_install --ignore-requires-python --only-binary megatron-core,triton megatron-core triton

"$VPY" - <<'EOF' >&2
import torch, deepspeed, importlib.metadata as md
print("torch", torch.__version__, "cuda" if torch.version.cuda else "cpu",
      "| deepspeed", deepspeed.__version__, "| megatron-core", md.version("megatron-core"))
EOF
printf '%s' "$PINS" > "$STAMP"
log "ready in $(( $(date +%s) - start ))s: $VPY"
echo "$VPY"
