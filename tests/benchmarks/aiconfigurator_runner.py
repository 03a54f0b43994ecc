"""Static estimates from NVIDIA's aiconfigurator, offline: run with the Python that has it.

    python -m venv .aic && .aic/bin/pip install aiconfigurator==0.12.0 aiconfigurator-core==0.12.0
    .aic/bin/python tests/benchmarks/aiconfigurator_runner.py < cases.json

stdin: a JSON list of {"id", "model" (Hugging Face id of a config aiconfigurator bundles),
"system" (h100_sxm, h200_sxm, b200_sxm), "backend" (vllm, sglang, trtllm), "isl", "osl", "batch",
"tp", "gemm_quant" (bfloat16, fp8, fp8_block, nvfp4), "kv_quant", "moe_quant" (optional), "ep"
(optional)}. stdout: a JSON list of {"id", "ttft_ms", "tpot_ms", "error"}. aiconfigurator's static
mode prefills the whole batch in one pass (TTFT) and averages lock-step decode steps over the output
(TPOT), from per-operation tables measured on the GPU (aiconfigurator_core/sdk/backends/base_backend.py).
It downloads unknown models' configs with urllib; the runner blocks every connection so nothing
leaves the machine. One failing case does not stop the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import urllib.request

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _offline(*_args: object, **_kwargs: object) -> None:
    raise ConnectionError("aiconfigurator_runner runs offline")


def _connect(self: socket.socket, address: object) -> None:
    if self.family == getattr(socket, "AF_UNIX", None):
        return _plain_connect(self, address)
    raise ConnectionError(f"aiconfigurator_runner runs offline ({address!r})")


_plain_connect = socket.socket.connect
urllib.request.urlopen = _offline  # type: ignore[assignment]
socket.socket.connect = _connect  # type: ignore[assignment]


def estimate(case: dict) -> dict:
    from aiconfigurator.cli.api import cli_estimate
    from aiconfigurator.sdk.models import check_is_moe

    moe = check_is_moe(case["model"])
    result = cli_estimate(
        case["model"], case["system"], mode="static", backend_name=case["backend"], backend_version=case.get("backend_version"),
        isl=case["isl"], osl=case["osl"], batch_size=case["batch"], tp_size=case["tp"], pp_size=1, attention_dp_size=1,
        moe_tp_size=None, moe_ep_size=(case.get("ep") or 1) if moe else None, gemm_quant_mode=case["gemm_quant"],
        kvcache_quant_mode=case.get("kv_quant", "bfloat16"), fmha_quant_mode=None,
        moe_quant_mode=case.get("moe_quant") if moe else None,
    )
    oom = bool(result.summary.check_oom()) if result.summary is not None else False
    return {"id": case["id"], "ttft_ms": float(result.ttft), "tpot_ms": float(result.tpot), "oom": oom, "error": None}


def main() -> int:
    cases = json.load(sys.stdin)
    out = sys.stdout
    results = []
    with contextlib.redirect_stdout(sys.stderr):
        for case in cases:
            try:
                results.append(estimate(case))
            except Exception as exc:  # noqa: BLE001 - reported per case
                results.append({"id": case.get("id"), "ttft_ms": None, "tpot_ms": None, "error": f"{type(exc).__name__}: {exc}"[:500]})
    json.dump(results, out, indent=1)
    out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
