"""Feed an exported ds_config to DeepSpeed's own config validation.

Engine: deepspeed 0.19.8 (PyPI, built with DS_BUILD_OPS=0) on CPU torch 2.13.0,
installed by .ci/engines-training.sh; run with that venv's interpreter:

    echo '{"config": {...}, "data_parallel_size": 16}' | python tests/engines/deepspeed_check.py

Function used: deepspeed.runtime.config.DeepSpeedConfig(config, mpu=...), the
object deepspeed.initialize() builds first. Its constructor parses every block
(ZeRO via the pydantic DeepSpeedZeroConfig, which rejects unknown keys; fp16/bf16;
activation checkpointing; ...), fills the missing one of train_batch_size /
train_micro_batch_size_per_gpu / gradient_accumulation_steps, and asserts
train_batch_size == micro * gas * data-parallel world size.

Shims: without a process group the constructor ignores mpu and takes world size 1,
so deepspeed.comm.get_rank is made to answer 0 and a stub mpu answers
get_data_parallel_world_size() with the input "data_parallel_size".
Prints one JSON line: {"ok": true, "summary": {...}} or {"ok": false, "error": "..."};
exit 0 for either, 2 for a malformed request, 1 (traceback) if the harness breaks.
"""
import contextlib
import io
import json
import logging
import sys
import traceback


class _MPU:
    def __init__(self, dp):
        self.dp = dp

    def get_data_parallel_world_size(self):
        return self.dp


def _one_line(exc):
    msg = " ".join(str(exc).split())
    if not msg:  # a bare `assert`: name the engine's line instead
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        path = frame.filename[frame.filename.rfind("deepspeed/"):]
        msg = f"{path}:{frame.lineno}: {frame.line}"
    return f"{type(exc).__name__}: {msg}"


def _device(offload):
    if offload is None:
        return None
    dev = offload.device
    return getattr(dev, "value", dev)


def check(req):
    import deepspeed
    import deepspeed.comm as dist
    from deepspeed.runtime.config import DeepSpeedConfig

    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    config, dp = req["config"], int(req["data_parallel_size"])
    dist.get_rank = lambda *a, **k: 0
    cfg = DeepSpeedConfig(json.loads(json.dumps(config)), mpu=_MPU(dp))
    if cfg.world_size != dp:
        raise RuntimeError(f"harness: DeepSpeed took world size {cfg.world_size}, not {dp}")
    zero = cfg.zero_config
    ac = cfg.activation_checkpointing_config
    return {
        "deepspeed": deepspeed.__version__,
        "data_parallel_size": cfg.world_size,
        "train_batch_size": cfg.train_batch_size,
        "train_micro_batch_size_per_gpu": cfg.train_micro_batch_size_per_gpu,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "zero_stage": int(cfg.zero_optimization_stage),
        "offload_optimizer_device": _device(zero.offload_optimizer),
        "offload_param_device": _device(zero.offload_param),
        "overlap_comm": zero.overlap_comm,
        "contiguous_gradients": zero.contiguous_gradients,
        "fp16": bool(cfg.float16_config.enabled),
        "bf16": bool(cfg.bfloat16_config.enabled),
        "gradient_clipping": cfg.gradient_clipping,
        "partition_activations": ac.partition_activations,
        "cpu_checkpointing": ac.cpu_checkpointing,
        "optimizer": cfg.optimizer_name,
    }


def main():
    try:  # a malformed request is the caller's fault: say so and exit 2
        req = json.loads(sys.stdin.read())
        missing = [k for k in ("config", "data_parallel_size") if k not in req]
        if missing:
            raise ValueError(f"missing keys {missing}")
        if not isinstance(req["config"], dict):
            raise TypeError("config must be a JSON object")
    except (ValueError, TypeError) as exc:
        print(json.dumps({"ok": False, "error": "harness: bad request: " + _one_line(exc)}))
        return 2
    noise = io.StringIO()  # DeepSpeed logs and prints while importing
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            summary = check(req)
        out = {"ok": True, "summary": summary}
    except (AssertionError, ValueError, TypeError, KeyError) as exc:
        out = {"ok": False, "error": _one_line(exc)}  # pydantic's ValidationError is a ValueError
    except Exception as exc:
        if type(exc).__name__ != "DeepSpeedConfigError":
            sys.stderr.write(noise.getvalue())
            raise
        out = {"ok": False, "error": _one_line(exc)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
