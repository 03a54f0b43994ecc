"""Check a `vllm serve` argv with vLLM 0.33.0's own parser and config validators.

Run under the ENGINE interpreter (see .ci/engines-vllm-sglang.sh), not the
project's venv:  echo '{...}' | <engine-python> tests/engines/vllm_check.py

stdin: one JSON object
  {"argv": ["serve", "MODEL", "--tensor-parallel-size", "8", ...],
   "env": {"VLLM_PP_LAYER_PARTITION": "42,38"},      # optional
   "config_json": {...the model's HF config.json...}}
Model rule: the value after `--model` (or `--model=`) is replaced by a temp
directory holding config.json; without `--model`, argv[1] (the positional
model_tag after "serve") is replaced. `--skip-tokenizer-init` is appended when
absent (no tokenizer files exist). HF_HUB_OFFLINE=1 is forced.

stdout: exactly one JSON line, exit code 0 either way:
  {"ok": true, "summary": {...resolved values..., "pp_ranges": [[s, e], ...]}}
  {"ok": false, "error": "<vLLM's message, one line>"}

vLLM code used, in the order `vllm serve` runs it:
  the real CLI parser (FlexibleArgumentParser + ServeSubcommand.subparser_init,
  i.e. make_arg_parser), ServeSubcommand.validate (validate_parsed_serve_args),
  ServeSubcommand.cmd (DP load-balancing / headless rules; its launchers are
  stubbed), AsyncEngineArgs.from_cli_args(args).create_engine_config(
  usage_context=OPENAI_API_SERVER, headless=...), run_headless's two extra
  checks, and vllm.distributed.utils.get_pp_indices for every pp rank (the
  function that applies VLLM_PP_LAYER_PARTITION at model construction; vLLM
  itself does not look at that variable while building the config).
The platform is vLLM's CpuPlatform (no GPU): nothing GPU-specific such as
memory, kernels, attention backends or quantization kernels is checked.
"""
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import types


def one_line(exc):
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, str) else exc
    return re.sub(r"\s*\n\s*", " | ", text.strip())


def substitute_model(argv, model_dir):
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--model" and i + 1 < len(argv):
            argv[i + 1] = model_dir
            break
        if a.startswith("--model="):
            argv[i] = "--model=" + model_dir
            break
    else:
        if len(argv) > 1 and not argv[1].startswith("-"):
            argv[1] = model_dir
        else:
            raise SystemExit("harness: no --model and no positional model after 'serve'")
    if "--skip-tokenizer-init" not in argv:
        argv.append("--skip-tokenizer-init")
    return argv


def check(argv):
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.cli import serve as serve_mod
    from vllm.usage.usage_lib import UsageContext
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    sub = parser.add_subparsers(required=False, dest="subparser")
    cmd = serve_mod.ServeSubcommand()
    cmd.subparser_init(sub).set_defaults(dispatch_function=cmd.cmd)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit:
        lines = [l for l in err.getvalue().splitlines() if l.strip()]
        return {"ok": False, "error": lines[-1] if lines else "argparse exit"}
    if args.subparser != "serve":
        return {"ok": False, "error": f"harness: subcommand {args.subparser!r} is not 'serve'"}
    cmd.validate(args)
    # Run ServeSubcommand.cmd for its own rules, with the launchers stubbed.
    mode = []
    serve_mod.run_headless = lambda a: mode.append("headless")
    serve_mod.run_multi_api_server = lambda a: mode.append("multi_api_server")
    serve_mod.run_dp_supervisor = lambda a: mode.append("dp_supervisor")
    serve_mod.run_server = lambda a: "server"
    serve_mod.uvloop = types.SimpleNamespace(run=lambda coro: mode.append(coro))
    cmd.cmd(args)
    engine_args = AsyncEngineArgs.from_cli_args(args)
    headless = mode == ["headless"]
    cfg = engine_args.create_engine_config(
        usage_context=UsageContext.OPENAI_API_SERVER, headless=headless)
    pc, mc, cc, sc = (cfg.parallel_config, cfg.model_config,
                      cfg.cache_config, cfg.scheduler_config)
    if headless:  # the checks run_headless does right after the config
        if engine_args.data_parallel_hybrid_lb:
            raise ValueError("data_parallel_hybrid_lb is not applicable in headless mode")
        if pc.data_parallel_size_local <= 0:
            raise ValueError("data_parallel_size_local must be > 0 in headless mode")
    from vllm.distributed.utils import get_pp_indices
    layers = mc.hf_text_config.num_hidden_layers
    pp_ranges = [list(get_pp_indices(layers, r, pc.pipeline_parallel_size))
                 for r in range(pc.pipeline_parallel_size)]
    summary = {
        "mode": mode[0] if mode else None,
        "tensor_parallel_size": pc.tensor_parallel_size,
        "pipeline_parallel_size": pc.pipeline_parallel_size,
        "data_parallel_size": pc.data_parallel_size,
        "data_parallel_size_local": pc.data_parallel_size_local,
        "data_parallel_rank": pc.data_parallel_rank,
        "nnodes": pc.nnodes, "node_rank": pc.node_rank,
        "world_size": pc.world_size,
        "world_size_across_dp": pc.world_size_across_dp,
        "max_model_len": mc.max_model_len,
        "max_num_seqs": sc.max_num_seqs,
        "max_num_batched_tokens": sc.max_num_batched_tokens,
        "kv_cache_dtype": cc.cache_dtype, "block_size": cc.block_size,
        "gpu_memory_utilization": cc.gpu_memory_utilization,
        "kv_cache_memory_bytes": cc.kv_cache_memory_bytes,
        "quantization": mc.quantization, "dtype": str(mc.dtype).replace("torch.", ""),
        "enforce_eager": mc.enforce_eager,
        "num_hidden_layers": layers, "pp_ranges": pp_ranges,
    }
    return {"ok": True, "summary": summary}


def main():
    req = json.load(sys.stdin)
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # vLLM logs to stdout; keep ours clean
    os.environ.update({k: str(v) for k, v in (req.get("env") or {}).items()})
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    with tempfile.TemporaryDirectory(prefix="vllm_check_") as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(req["config_json"], f)
        argv = substitute_model(req["argv"], d)
        try:
            result = check(argv)
        except ImportError:  # a broken engine install is a harness crash
            raise
        except Exception as exc:  # vLLM's own rejection
            result = {"ok": False, "error": one_line(exc).replace(d, "MODEL")}
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()


if __name__ == "__main__":
    main()
