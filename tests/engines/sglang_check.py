"""Check a `python -m sglang.launch_server` argv with SGLang 0.5.23's own code.

Run under the ENGINE interpreter (see .ci/engines-vllm-sglang.sh), not the
project's venv:  echo '{...}' | <engine-python> tests/engines/sglang_check.py

stdin: one JSON object
  {"argv": ["--model-path", "MODEL", "--tp-size", "8", ...],  # after -m sglang.launch_server
   "env": {"SGLANG_PP_LAYER_PARTITION": "42,38"},             # optional
   "config_json": {...the model's HF config.json...}}
Model rule: the value after `--model-path` (or `--model-path=`) is replaced by
a temp directory holding config.json. `--device cpu` is appended when argv has
no `--device` (there is no GPU; SGLang refuses to resolve without a device).
HF_HUB_OFFLINE=1 is forced.

stdout: exactly one JSON line, exit code 0 either way:
  {"ok": true, "summary": {...resolved values..., "pp_ranges": [[s, e], ...]}}
  {"ok": false, "error": "<SGLang's message, one line>"}
  The summary carries SGLang's own names (tp_size, pp_size, context_length, ...)
  and also tensor_parallel_size / pipeline_parallel_size / max_model_len.

SGLang code used, in the order launch_server / Engine._launch_subprocesses
runs it: sglang.srt.server_args.prepare_server_args(argv) (argparse + config
file merge), ServerArgs.resolve_once() (the resolution pipeline: defaults,
model config.json, per-model overrides), ServerArgs.check_server_args()
(cross-field rules, e.g. (tp*pp) % nnodes == 0, no dp_size>1 with nnodes>1),
and sglang.srt.distributed.utils.get_pp_indices for every pp rank (the
function that applies SGLANG_PP_LAYER_PARTITION when the model is built;
SGLang does not read that variable while resolving arguments).
Rules that depend on the device (CUDA memory sizing, attention backend
choice, CUDA-graph sizes, quantization kernels) are resolved for device cpu.
"""
import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import tempfile


def one_line(exc):
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, str) else exc
    return re.sub(r"\s*\n\s*", " | ", text.strip())


def substitute_model(argv, model_dir):
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--model-path" and i + 1 < len(argv):
            argv[i + 1] = model_dir
            break
        if a.startswith("--model-path="):
            argv[i] = "--model-path=" + model_dir
            break
    else:
        raise SystemExit("harness: argv has no --model-path")
    if not any(a == "--device" or a.startswith("--device=") for a in argv):
        argv += ["--device", "cpu"]
    return argv


def torchvision_shim():
    """PyPI's torchvision is CUDA-linked; on CPU torch its _C cannot load and
    `import torchvision` fails on two unguarded fake-op registrations. SGLang
    imports torchvision.transforms only for constants, so declare the two op
    schemas when (and only when) torchvision's own extension cannot load."""
    import torch
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        return
    try:
        torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), "_C.so"))
    except OSError:
        for op in ("nms", "qnms"):
            torch.library.define(f"torchvision::{op}",
                                 "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def check(argv):
    torchvision_shim()
    from sglang.srt.arg_groups.model_override_base import model_config_of
    from sglang.srt.arg_groups.overrides import resolving_view
    from sglang.srt.distributed.utils import get_pp_indices
    from sglang.srt.server_args import prepare_server_args

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            server_args = prepare_server_args(argv)
    except SystemExit:
        lines = [l for l in err.getvalue().splitlines() if l.strip()]
        return {"ok": False, "error": lines[-1] if lines else "argparse exit"}
    server_args.resolve_once()
    server_args.check_server_args()
    cfg = resolving_view(server_args)
    layers = model_config_of(server_args).num_hidden_layers
    pp_ranges = [list(get_pp_indices(layers, r, cfg.pp_size)) for r in range(cfg.pp_size)]
    keys = ["tp_size", "pp_size", "dp_size", "nnodes", "node_rank", "dist_init_addr",
            "context_length", "max_running_requests", "chunked_prefill_size",
            "kv_cache_dtype", "page_size", "mem_fraction_static", "quantization",
            "dtype", "disable_cuda_graph", "enable_dp_attention", "device",
            "attention_backend"]
    summary = {k: getattr(cfg, k) for k in keys}
    summary.update(tensor_parallel_size=cfg.tp_size, pipeline_parallel_size=cfg.pp_size,
                   max_model_len=cfg.context_length,  # vLLM's names, same values
                   num_hidden_layers=layers, pp_ranges=pp_ranges)
    return {"ok": True, "summary": summary}


def main():
    req = json.load(sys.stdin)
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # keep engine prints/logs off our stdout
    os.environ.update({k: str(v) for k, v in (req.get("env") or {}).items()})
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory(prefix="sglang_check_") as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(req["config_json"], f)
        argv = substitute_model(req["argv"], d)
        try:
            result = check(argv)
        except ImportError:  # a broken engine install is a harness crash
            raise
        except Exception as exc:  # SGLang's own rejection (often AssertionError)
            result = {"ok": False, "error": one_line(exc).replace(d, "MODEL")}
    real_stdout.write(json.dumps(result, default=str) + "\n")
    real_stdout.flush()


if __name__ == "__main__":
    main()
