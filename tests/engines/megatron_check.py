"""Feed a pretrain_gpt.py argv to Megatron-LM's own argument validation.

Engine: megatron-core 0.19.2 from PyPI (its cp311 wheel carries megatron/training),
installed by .ci/engines-training.sh; run with that venv's interpreter:

    echo '{"argv": [...], "env": {...}, "world_size": 16}' | python tests/engines/megatron_check.py

Functions used: megatron.training.arguments.parse_args, validate_args,
megatron.training.argument_utils.core_transformer_config_from_args (whose
TransformerConfig.__post_init__ parses --pipeline-model-parallel-layout into a
PipelineParallelLayerLayout and checks it), then per stage
megatron.core.transformer.transformer_block.get_num_layers_to_build and
megatron.core.transformer.transformer_layer.get_transformer_layer_offset, and
megatron.core.num_microbatches_calculator.ConstantNumMicroBatchesCalculator.

Shims, as nothing here has a GPU or a process group: WORLD_SIZE/RANK come from
"world_size"; get_device_arch_version and torch.cuda.get_device_capability answer
"device_arch" (default 9, Hopper: then TP/CP need CUDA_DEVICE_MAX_CONNECTIONS=1);
CUDA_*, NVTE_*, MEGATRON_* variables are dropped and "env" is set before Megatron
is imported; rope fusion is turned off where Transformer Engine is absent ("shims").
Prints one JSON line: {"ok": true, "summary": {...}} or {"ok": false, "error": "..."};
exit 0 for either, 2 for a malformed request, 1 (traceback) if the harness breaks.
"""
import contextlib
import io
import json
import os
import sys
import traceback
import typing


def _one_line(exc):
    msg = " ".join(str(exc).split())
    if not msg:  # a bare `assert`: name the engine's line instead
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        path = frame.filename[frame.filename.rfind("megatron/"):]
        msg = f"{path}:{frame.lineno}: {frame.line}"
    return f"{type(exc).__name__}: {msg}"


def _runs(chunk):
    """[embedding, decoder, decoder] -> "embedding,decoder*2" (as Megatron's pretty_repr)."""
    out = []
    for t in chunk:
        if out and out[-1][0] == t.name:
            out[-1][1] += 1
        else:
            out.append([t.name, 1])
    return ",".join(n if c == 1 else f"{n}*{c}" for n, c in out) or "(empty)"


def check(req):
    argv = [str(a) for a in req["argv"]]
    world = int(req["world_size"])
    for key in [k for k in os.environ if k.startswith(("CUDA_", "NVTE_", "MEGATRON_"))]:
        del os.environ[key]
    os.environ.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    os.environ["WORLD_SIZE"], os.environ["RANK"] = str(world), "0"

    if not hasattr(typing, "override"):  # megatron-core >= 0.17 targets Python 3.12
        import typing_extensions
        typing.override = typing_extensions.override
    import torch
    import megatron.training.arguments as margs
    from megatron.core import parallel_state as ps
    from megatron.core.num_microbatches_calculator import ConstantNumMicroBatchesCalculator
    from megatron.core.transformer.transformer_block import get_num_layers_to_build
    from megatron.core.transformer.transformer_layer import get_transformer_layer_offset
    from megatron.training.argument_utils import core_transformer_config_from_args

    arch = int(req.get("device_arch", 9))
    margs.get_device_arch_version = lambda: arch
    torch.cuda.get_device_capability = lambda *a, **k: (arch, 0)
    sys.argv = ["pretrain_gpt.py"] + argv
    args = margs.parse_args()
    margs.validate_args(args)
    shims = []  # TransformerConfig checks that need a GPU library, not the argv
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        if args.apply_rope_fusion:
            args.apply_rope_fusion = False
            shims.append("apply_rope_fusion=False (no Transformer Engine here)")
    config = core_transformer_config_from_args(args)
    calc = ConstantNumMicroBatchesCalculator(
        args.global_batch_size, args.micro_batch_size, args.data_parallel_size, None, 0)

    pp = args.pipeline_model_parallel_size
    vpp = args.virtual_pipeline_model_parallel_size
    ps.set_pipeline_model_parallel_world_size(pp)
    ps.set_virtual_pipeline_model_parallel_world_size(vpp)
    layout = config.pipeline_model_parallel_layout
    stages = []  # in layer order: virtual stage major, pipeline rank minor
    for v in range(vpp or 1):
        for p in range(pp):
            ps.set_pipeline_model_parallel_rank(p)
            vs = v if vpp else None
            n = get_num_layers_to_build(config, vp_stage=vs, pp_rank=p)
            off = get_transformer_layer_offset(config, vp_stage=vs, pp_rank=p) if pp > 1 else 0
            stage = {"pp_rank": p, "vp_stage": v, "first_layer": off, "num_layers": n}
            if layout is not None:  # the engine's parsed PipelineParallelLayerLayout
                stage["layers"] = _runs(layout.layout[p][v])
            stages.append(stage)
    names = {"tp": "tensor_model_parallel_size", "cp": "context_parallel_size",
             "ep": "expert_model_parallel_size", "dp": "data_parallel_size"}
    for key in ("world_size", "micro_batch_size", "global_batch_size", "num_layers",
                "sequence_parallel", "use_distributed_optimizer", "recompute_granularity",
                "recompute_method", "recompute_num_layers"):
        names[key] = key
    summary = {key: getattr(args, attr) for key, attr in names.items()}
    summary.update(pp=pp, vpp=vpp, num_microbatches=calc.get(), stages=stages, shims=shims,
                   params_dtype=str(args.params_dtype).replace("torch.", ""))
    return summary


def main():
    try:  # a malformed request is the caller's fault: say so and exit 2
        req = json.loads(sys.stdin.read())
        missing = [k for k in ("argv", "world_size") if k not in req]
        if missing:
            raise ValueError(f"missing keys {missing}")
    except (ValueError, TypeError) as exc:
        print(json.dumps({"ok": False, "error": "harness: bad request: " + _one_line(exc)}))
        return 2
    noise = io.StringIO()  # Megatron prints to stdout and argparse to stderr
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            summary = check(req)
        out = {"ok": True, "summary": summary}
    except SystemExit as exc:  # argparse errors and Megatron's exit() calls
        err = noise.getvalue().strip().splitlines()
        out = {"ok": False, "error": f"SystemExit({exc.code}): " + (err[-1] if err else "")}
    except (AssertionError, ValueError, TypeError, KeyError, NotImplementedError,
            RuntimeError) as exc:
        out = {"ok": False, "error": _one_line(exc)}
    except BaseException:
        sys.stderr.write(noise.getvalue())
        raise
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
