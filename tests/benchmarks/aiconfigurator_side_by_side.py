"""The planner's static estimates beside NVIDIA aiconfigurator's, case by case, as a table.

Run: python tests/benchmarks/aiconfigurator_side_by_side.py --aic-python PATH [--markdown]
(PATH: a Python with `pip install aiconfigurator==0.12.0 aiconfigurator-core==0.12.0`; its bundled
per-operation tables, measured on H100/H200/B200 with vLLM 0.24.0, SGLang 0.5.14 and TensorRT-LLM
1.3.0rc20, run offline; or set PLANNER_AIC_PYTHON.)

Both sides answer aiconfigurator's static question for the same work: a batch of `batch` requests
with `isl`-token prompts prefilled in one forward pass (time to first token), then decoded in lock
step for `osl` tokens (time per output token, averaged over the growing context). The planner's
side is its own step model (planner/estimate/performance.py) with the engine class's fitted
efficiencies, on an inventory of the case's GPUs, without the per-request overhead a served
request adds (aiconfigurator's static figures have none). TensorRT-LLM cases use the vLLM class.
The planner is never fitted to these numbers; where the two disagree, docs/benchmarks.md says which
published measurement sides with whom.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from speed_cases import inventory_text  # noqa: E402

from planner.commands.args import MemoryArgs  # noqa: E402
from planner.commands.memory import resolve_mix  # noqa: E402
from planner.estimate.performance import StagePlan, estimate_replica_step  # noqa: E402
from planner.estimate.shards import split_layers  # noqa: E402
from planner.estimate.speed import StepLoad  # noqa: E402
from planner.estimate.weights import estimate_weight_bytes  # noqa: E402
from planner.loaders.calibration import load_calibration  # noqa: E402
from planner.loaders.catalog import load_catalog_model  # noqa: E402
from planner.loaders.engines import load_engine_catalog  # noqa: E402
from planner.loaders.formats import build_precision_mix  # noqa: E402
from planner.loaders.inventory import load_inventory  # noqa: E402
from planner.topology import build_topology  # noqa: E402

DECODE_SAMPLES = 8  # contexts at which the lock-step decode is timed, spread over the output
HF = {"llama-3.1-8b": "meta-llama/Meta-Llama-3.1-8B", "llama-3.1-70b": "meta-llama/Meta-Llama-3.1-70B",
      "llama-3.1-405b": "meta-llama/Meta-Llama-3.1-405B", "qwen3-32b": "Qwen/Qwen3-32B", "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B",
      "qwen3-235b-a22b": "Qwen/Qwen3-235B-A22B", "deepseek-v3": "deepseek-ai/DeepSeek-V3", "gpt-oss-120b": "openai/gpt-oss-120b"}
SYSTEM = {"h100-sxm": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm"}
# planner weight format -> aiconfigurator GEMM (and MoE) quantisation
QUANT = {"bf16": ("bfloat16", "bfloat16"), "fp8": ("fp8", "fp8"), "fp8_block128": ("fp8_block", "fp8_block"),
         "checkpoint": (None, None)}
KV = {"fp16": "bfloat16", "bf16": "bfloat16", "fp8": "fp8"}


@dataclass(frozen=True)
class Case:
    id: str
    model: str
    device: str
    engine: str  # vllm | sglang | trtllm
    tp: int
    batch: int
    weights: str
    kv: str = "bf16"
    isl: int = 1024
    osl: int = 1024


CASES = (
    Case("llama8b-h100-vllm-tp1-bf16-b1", "llama-3.1-8b", "h100-sxm", "vllm", 1, 1, "bf16"),
    Case("llama8b-h100-vllm-tp1-bf16-b8", "llama-3.1-8b", "h100-sxm", "vllm", 1, 8, "bf16"),
    Case("llama8b-h100-vllm-tp1-bf16-b64", "llama-3.1-8b", "h100-sxm", "vllm", 1, 64, "bf16"),
    Case("llama8b-h100-vllm-tp1-fp8-b1", "llama-3.1-8b", "h100-sxm", "vllm", 1, 1, "fp8"),
    Case("llama8b-h100-vllm-tp1-fp8-b32", "llama-3.1-8b", "h100-sxm", "vllm", 1, 32, "fp8"),
    Case("llama8b-h100-sglang-tp1-bf16-b16", "llama-3.1-8b", "h100-sxm", "sglang", 1, 16, "bf16"),
    Case("llama70b-h100-vllm-tp4-fp8-b1", "llama-3.1-70b", "h100-sxm", "vllm", 4, 1, "fp8"),
    Case("llama70b-h100-vllm-tp4-fp8-b8", "llama-3.1-70b", "h100-sxm", "vllm", 4, 8, "fp8"),
    Case("llama70b-h100-vllm-tp4-fp8-b32", "llama-3.1-70b", "h100-sxm", "vllm", 4, 32, "fp8"),
    Case("llama70b-h100-vllm-tp8-bf16-b16", "llama-3.1-70b", "h100-sxm", "vllm", 8, 16, "bf16"),
    Case("llama70b-h100-sglang-tp2-fp8-b4", "llama-3.1-70b", "h100-sxm", "sglang", 2, 4, "fp8"),
    Case("llama70b-h200-trtllm-tp8-fp8-b64", "llama-3.1-70b", "h200", "trtllm", 8, 64, "fp8"),
    Case("llama70b-b200-trtllm-tp2-fp8-b16", "llama-3.1-70b", "b200", "trtllm", 2, 16, "fp8"),
    Case("llama405b-h100-vllm-tp8-fp8-b4", "llama-3.1-405b", "h100-sxm", "vllm", 8, 4, "fp8"),
    Case("qwen32b-h100-vllm-tp1-fp8-b32-4k", "qwen3-32b", "h100-sxm", "vllm", 1, 32, "fp8", "fp8", 4096, 512),
    Case("qwen32b-h100-sglang-tp2-bf16-b8-4k", "qwen3-32b", "h100-sxm", "sglang", 2, 8, "bf16", "bf16", 4096, 512),
    Case("qwen32b-b200-trtllm-tp1-fp8-b16-4k", "qwen3-32b", "b200", "trtllm", 1, 16, "fp8", "bf16", 4096, 512),
    Case("qwen30b-h100-sglang-tp1-fp8-b1", "qwen3-30b-a3b", "h100-sxm", "sglang", 1, 1, "fp8_block128"),
    Case("qwen30b-h100-sglang-tp1-fp8-b16", "qwen3-30b-a3b", "h100-sxm", "sglang", 1, 16, "fp8_block128"),
    Case("qwen30b-h100-sglang-tp1-fp8-b64", "qwen3-30b-a3b", "h100-sxm", "sglang", 1, 64, "fp8_block128"),
    Case("qwen30b-h100-vllm-tp1-bf16-b16", "qwen3-30b-a3b", "h100-sxm", "vllm", 1, 16, "bf16"),
    Case("qwen235b-h200-vllm-tp8-bf16-b8", "qwen3-235b-a22b", "h200", "vllm", 8, 8, "bf16"),
    Case("deepseekv3-h200-sglang-tp8-b1", "deepseek-v3", "h200", "sglang", 8, 1, "checkpoint"),
    Case("deepseekv3-h200-sglang-tp8-b8", "deepseek-v3", "h200", "sglang", 8, 8, "checkpoint"),
    Case("deepseekv3-h200-sglang-tp8-b32", "deepseek-v3", "h200", "sglang", 8, 32, "checkpoint"),
    Case("gptoss120b-h100-vllm-tp1-b1", "gpt-oss-120b", "h100-sxm", "vllm", 1, 1, "checkpoint"),
    Case("gptoss120b-h100-vllm-tp2-b16", "gpt-oss-120b", "h100-sxm", "vllm", 2, 16, "checkpoint"),
)


def planner_static(case: Case, *, host_step: bool = True) -> tuple[float, float]:
    """(time to first token, time per output token) in ms, by the planner's step model; without
    `host_step`, leaving out the engine's fixed per-step host time (step_overhead_s: scheduling,
    sampling, detokenising), which aiconfigurator's static figure, a sum of GPU operations, has not."""
    model = load_catalog_model(case.model)
    if case.weights == "checkpoint":  # as the model ships (DeepSeek-V3 block FP8, gpt-oss MXFP4 experts)
        mix = resolve_mix(MemoryArgs(model=case.model, kv_cache=case.kv), model)
    else:
        mix = build_precision_mix(case.weights, case.kv)
    weights = estimate_weight_bytes(model, mix)
    row = {"device": case.device, "count": case.tp, "machines": 1}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cluster.yaml"
        path.write_text(inventory_text(row))
        cluster = load_inventory(path)
    topology = build_topology(cluster)
    ids = [d.id for d in cluster.devices]
    spec = cluster.devices[0].spec
    engine = load_engine_catalog()["vllm" if case.engine == "trtllm" else case.engine]
    calibration = load_calibration(engine.speed.speed_class)[spec.calibration_class]
    if not host_step:
        calibration = dataclasses.replace(calibration, step_overhead_s=0.0)
    route = topology.route(ids[0], ids[1]) if case.tp > 1 else None
    stages = [StagePlan(spec, layers, case.tp, calibration, route.bandwidth_gb_s if route else 0.0,
                        route.latency_us if route else 0.0) for layers in split_layers(model.num_layers, 1)]
    prefill = estimate_replica_step(model, mix, weights, stages, StepLoad(0, case.isl, case.batch * case.isl, case.isl // 2),
                                    overlap=False).period_s
    decode = [estimate_replica_step(model, mix, weights, stages,
                                    StepLoad(case.batch, case.isl + int(case.osl * (k + 0.5) / DECODE_SAMPLES)),
                                    overlap=True).period_s for k in range(DECODE_SAMPLES)]
    return 1000 * prefill, 1000 * sum(decode) / len(decode)


def aiconfigurator_static(cases: tuple[Case, ...], python: str) -> dict[str, dict]:
    """aiconfigurator's static estimates, through tests/benchmarks/aiconfigurator_runner.py."""
    requests = []
    for case in cases:
        gemm, moe = QUANT[case.weights]
        requests.append({"id": case.id, "model": HF[case.model], "system": SYSTEM[case.device], "backend": case.engine,
                         "isl": case.isl, "osl": case.osl, "batch": case.batch, "tp": case.tp, "gemm_quant": gemm,
                         "moe_quant": moe, "kv_quant": KV[case.kv]})
    done = subprocess.run([python, str(Path(__file__).with_name("aiconfigurator_runner.py"))], input=json.dumps(requests),
                          capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return {r["id"]: r for r in json.loads(done.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aic-python", default=os.environ.get("PLANNER_AIC_PYTHON"),
                        help="a Python with aiconfigurator 0.12.0 installed (default: $PLANNER_AIC_PYTHON)")
    options = parser.parse_args()
    if not options.aic_python:
        raise SystemExit("give --aic-python (a Python with `pip install aiconfigurator==0.12.0 aiconfigurator-core==0.12.0`)")
    theirs = aiconfigurator_static(CASES, options.aic_python)
    print("| case | engine | aiconfigurator TPOT ms | planner TPOT ms | ratio | planner GPU-only TPOT ms | ratio | "
          "aiconfigurator TTFT ms | planner TTFT ms | ratio | planner GPU-only TTFT ms | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = {"tpot": 0, "ttft": 0, "tpot_gpu": 0, "ttft_gpu": 0}
    compared = 0
    for case in CASES:
        ttft, tpot = planner_static(case)
        ttft_gpu, tpot_gpu = planner_static(case, host_step=False)
        other = theirs.get(case.id, {})
        if other.get("error") or other.get("tpot_ms") is None:
            print(f"| {case.id} | {case.engine} | ({(other.get('error') or 'no answer')[:60]}) | {tpot:.2f} | | {tpot_gpu:.2f} | | | "
                  f"{ttft:.1f} | | {ttft_gpu:.1f} | |")
            continue
        compared += 1
        ratios = {"tpot": tpot / other["tpot_ms"], "ttft": ttft / other["ttft_ms"],
                  "tpot_gpu": tpot_gpu / other["tpot_ms"], "ttft_gpu": ttft_gpu / other["ttft_ms"]}
        for key, ratio in ratios.items():
            ok[key] += abs(ratio - 1) <= (0.20 if key.startswith("tpot") else 0.25)
        flag = " (aiconfigurator: out of memory)" if other.get("oom") else ""
        print(f"| {case.id}{flag} | {case.engine} | {other['tpot_ms']:.2f} | {tpot:.2f} | {ratios['tpot']:.2f} | "
              f"{tpot_gpu:.2f} | {ratios['tpot_gpu']:.2f} | {other['ttft_ms']:.1f} | {ttft:.1f} | {ratios['ttft']:.2f} | "
              f"{ttft_gpu:.1f} | {ratios['ttft_gpu']:.2f} |")

    def share(key: str) -> str:
        return f"{ok[key]} ({ok[key] / max(1, compared):.0%})"

    print(f"\n{compared} cases compared. Whole step: time per output token within 20% on {share('tpot')}, time to first "
          f"token within 25% on {share('ttft')}. GPU operations only (no per-step host time, as aiconfigurator's "
          f"static figure): {share('tpot_gpu')} and {share('ttft_gpu')}.")


if __name__ == "__main__":
    main()
