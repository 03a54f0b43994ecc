#!/usr/bin/env bash
# Create the engine interpreters for tests/engines/{vllm,sglang}_check.py.
#
#   bash .ci/engines-vllm-sglang.sh [DIR]        (DIR defaults to .venv-engines)
#
# Two venvs, because vLLM 0.33.0 pins compressed-tensors==0.17.0 and SGLang
# 0.5.23 pins compressed-tensors==0.18.0 (both import it while validating):
#   DIR/vllm/bin/python    vllm==0.33.0   (no deps) + the modules its CLI parser
#                          and EngineArgs.create_engine_config import
#   DIR/sglang/bin/python  sglang==0.5.23 (no deps) + the modules that
#                          prepare_server_args/resolve_once/check_server_args import
# Both use torch==2.13.0: on this machine pip picks the local CPU wheel
# (torch-2.13.0+cpu). Without it pip falls back to PyPI's torch 2.13.0, a CUDA
# build with multi-GB nvidia-* wheels; the checks still work with it (no GPU
# is needed), the install is just slower and larger.
# Every package is pinned and installed with --no-deps, so nothing else
# (CUDA torch, flashinfer, triton for vLLM, ...) is pulled in. A second run
# finds the stamp file and costs well under a second. Wheels are byte-compiled
# at install (the default), which matters where PYTHONDONTWRITEBYTECODE=1.
# stdout: VLLM_PYTHON=<abs path> and SGLANG_PYTHON=<abs path>; progress on stderr.
set -euo pipefail

DIR=${1:-.venv-engines}
PY=${PYTHON:-python3.11}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

COMMON="aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 annotated-doc==0.0.7
annotated-types==0.8.0 anyio==4.16.0 apache-tvm-ffi==0.1.11 attrs==26.1.0
certifi==2026.10.19.post1 charset-normalizer==3.5.3 click==8.5.1 filelock==4.3.1
frozenlist==1.8.0 fsspec==2026.9.0 h11==0.16.0 hf-xet==1.8.0 idna==3.20 Jinja2==3.1.6
loguru==0.7.3 markdown-it-py==4.3.0 MarkupSafe==3.0.4 mdurl==0.1.2 mpmath==1.3.0
msgspec==0.23.0 multidict==7.2.1 networkx==3.6.1 numpy==2.4.6 orjson==3.13.0
packaging==26.4 pillow==13.0.0 propcache==0.5.4 psutil==7.2.2 pybase64==1.5.1
pydantic==2.14.4 pydantic_core==2.50.5 Pygments==2.21.0 PyYAML==6.0.4 pyzmq==27.3.0
regex==2026.11.19 requests==2.34.2 rich==15.0.0 safetensors==0.8.0 shellingham==1.5.4
starlette==1.10.0 sympy==1.14.0 tqdm==4.70.1 typer==0.29.2 typing-inspection==0.4.5
typing_extensions==4.16.0 urllib3==2.8.0 yarl==1.25.1 torch==2.13.0"

VLLM_PKGS="$COMMON cachetools==8.0.2 cbor2==6.3.0 cloudpickle==3.1.3
compressed-tensors==0.17.0 einops==0.8.2 fastapi==0.136.3 httpcore2==2.16.2
httpx2==2.16.2 huggingface_hub==2.4.0 jiter==0.19.0 llguidance==1.7.6 openai==3.57.0
openai-harmony==0.0.8 opentelemetry-api==1.45.2 partial-json-parser==0.2.1.1.post7
prometheus_client==0.26.0 py-cpuinfo==9.0.0 sniffio==1.3.1 tokenizers==0.23.3
transformers==5.20.2 truststore==0.10.5 uvicorn==0.54.0 uvloop==0.23.0
watchfiles==1.3.0 xgrammar==0.2.8 vllm==0.33.0"

SGLANG_PKGS="$COMMON asttokens==3.0.2 compressed-tensors==0.18.0 dill==0.4.1
executing==2.3.0 gguf==0.19.0 httpcore==1.0.9 httpx==0.28.1 huggingface_hub==1.33.0
ipython==9.18.1 ipython_pygments_lexers==1.1.1 jedi==0.20.1 matplotlib-inline==0.2.2
parso==0.8.7 pexpect==4.9.0 prompt_toolkit==3.0.53 ptyprocess==0.7.0 pure_eval==0.2.4
sentencepiece==0.2.1 stack-data==0.6.3 tokenizers==0.23.2 torchvision==0.28.0
traitlets==5.16.1 transformers==5.19.0 triton==3.9.0 wcwidth==0.9.4 sglang==0.5.23"

make_venv() {  # name, package list
  local name=$1 pkgs=$2 venv="$DIR/$1"
  local stamp="$venv/.engines-stamp"
  local want
  want=$(printf '%s\n' "$pkgs" "$PY" | sha256sum | cut -c1-16)
  if [[ -x "$venv/bin/python" && -f "$stamp" && $(cat "$stamp") == "$want" ]]; then
    echo "[$name] up to date ($venv)" >&2
    return
  fi
  echo "[$name] installing into $venv" >&2
  local t0=$SECONDS
  [[ -x "$venv/bin/python" ]] || "$PY" -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-warn-conflicts --no-deps $pkgs >&2
  # torch's own requirements: a no-op for the CPU wheel, nvidia-* for PyPI's CUDA build.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-warn-conflicts torch==2.13.0 >&2
  "$venv/bin/python" -c "import torch; print('[$name] torch', torch.__version__)" >&2
  echo "$want" > "$stamp"
  echo "[$name] done in $((SECONDS - t0)) s, $(du -sh "$venv" | cut -f1)" >&2
}

# The two installs are CPU-bound and single-threaded: run them side by side.
make_venv vllm "$VLLM_PKGS" & vllm_job=$!
make_venv sglang "$SGLANG_PKGS" & sglang_job=$!
status=0
wait "$vllm_job" || status=$?
wait "$sglang_job" || status=$?
[[ $status -eq 0 ]] || { echo "engine venv install failed" >&2; exit "$status"; }
echo "VLLM_PYTHON=$DIR/vllm/bin/python"
echo "SGLANG_PYTHON=$DIR/sglang/bin/python"
