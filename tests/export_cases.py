"""The export cases golden files are kept for: a plan on a bundled inventory, then its export.
`PLANNER_UPDATE_GOLDEN=1 python -m pytest tests/test_export.py` rewrites tests/data/golden/."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportCase:
    name: str
    inventory: str
    deploy: tuple[str, ...]
    target: str
    export: tuple[str, ...] = ()


CASES = (
    ExportCase("vllm-405b-two-nodes", "h100-2node-ib.yaml",
               ("--model", "llama-3.1-405b", "--weights", "bf16", "--users", "8", "--context", "8192"), "vllm"),
    ExportCase("vllm-70b-replicas", "dgx-h100.yaml",
               ("--model", "llama-3.1-70b", "--weights", "fp8", "--kv-cache", "fp8", "--users", "64", "--context", "8192",
                "-tp", "2"), "vllm"),
    ExportCase("vllm-70b-uneven", "h100-2node-ib.yaml",
               ("--model", "llama-3.1-70b", "--users", "4", "--context", "8192", "-tp", "8", "--layer-split", "42,38"),
               "vllm"),
    ExportCase("sglang-405b-two-nodes", "h100-2node-ib.yaml",
               ("--model", "llama-3.1-405b", "--weights", "bf16", "--users", "8", "--context", "8192", "--engine", "sglang"),
               "sglang"),
    ExportCase("kubernetes-vllm-405b", "h100-2node-ib.yaml",
               ("--model", "llama-3.1-405b", "--weights", "bf16", "--users", "8", "--context", "8192"), "kubernetes"),
    ExportCase("kubernetes-vllm-70b-replicas", "dgx-h100.yaml",
               ("--model", "llama-3.1-70b", "--weights", "fp8", "--kv-cache", "fp8", "--users", "64", "--context", "8192",
                "-tp", "2"), "kubernetes"),
    ExportCase("llamacpp-gpu-and-mac", "mixed-gpu-mac.yaml",
               ("--model", "llama-3.1-70b", "--weights", "q4_k_m", "--engine", "llama.cpp", "--users", "2", "--context", "8192",
                "--layer-split", "30,30,20"), "llama.cpp"),
    ExportCase("llamacpp-homelab", "homelab.yaml",
               ("--model", "qwen3-32b", "--weights", "q4_k_m", "--engine", "llama.cpp", "--users", "2", "--context", "16384"),
               "llama.cpp"),
    ExportCase("exo-405b", "mac-studio-cluster.yaml",
               ("--model", "llama-3.1-405b", "--weights", "mlx-8bit", "--engine", "exo", "--users", "4", "--context", "32768",
                "-pp", "2"), "exo", ("--model-path", "mlx-community/Meta-Llama-3.1-405B-Instruct-8bit")),
    ExportCase("mlxlm-405b-pipeline", "mac-studio-cluster.yaml",
               ("--model", "llama-3.1-405b", "--weights", "mlx-8bit", "--engine", "mlx-lm", "--users", "4", "--context", "32768",
                "-pp", "2"), "mlx-lm"),
    ExportCase("deepspeed-8b", "h100-2node-ib.yaml",
               ("--model", "llama-3.1-8b", "--mode", "train", "--engine", "deepspeed", "--global-batch-size", "64",
                "--sequence-length", "4096"), "deepspeed"),
    ExportCase("deepspeed-70b-offload", "dgx-h100.yaml",
               ("--model", "llama-3.1-70b", "--mode", "train", "--engine", "deepspeed", "--global-batch-size", "32",
                "--sequence-length", "4096", "--zero-stage", "3", "--offload", "optimizer"), "deepspeed"),
    ExportCase("megatron-70b", "h100-2node-ib.yaml",
               ("--model", "llama-3.1-70b", "--mode", "train", "--engine", "megatron", "--global-batch-size", "64",
                "--sequence-length", "4096"), "megatron"),
)
