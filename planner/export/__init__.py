"""Exports: a plan turned into the launch files of the engine it was made for (each exporter a
pure function from a plan and its context to a Bundle, or ExportRefused with the reason)."""

from __future__ import annotations

from collections.abc import Callable

from planner.export.apple import to_exo, to_mlxlm
from planner.export.bundle import Bundle, ExportRefused, Launch
from planner.export.context import ExportContext
from planner.export.kubernetes import to_kubernetes
from planner.export.llamacpp import to_llamacpp
from planner.export.sglang import to_sglang
from planner.export.training import to_deepspeed, to_megatron
from planner.export.vllm import to_vllm
from planner.schemas.plan import ServePlan, TrainPlan

EXPORTERS: dict[str, Callable[..., Bundle]] = {
    "vllm": to_vllm, "sglang": to_sglang, "llama.cpp": to_llamacpp, "exo": to_exo, "mlx-lm": to_mlxlm,
    "deepspeed": to_deepspeed, "megatron": to_megatron, "kubernetes": to_kubernetes,
}


def build_bundle(target: str, plan: ServePlan | TrainPlan, context: ExportContext) -> Bundle:
    """The target's bundle of the plan. A plan made for one engine exports to that engine (and,
    for vLLM and SGLang, to Kubernetes): its figures hold only under that engine's rules."""
    if target not in EXPORTERS:
        raise ExportRefused(f"unknown export target {target!r}; choose one of {', '.join(EXPORTERS)}", field="--to")
    engine = plan.request.engine.id
    if target not in (engine, "kubernetes"):
        raise ExportRefused(f"this plan was made for {plan.request.engine.name} (its memory, batch and layout rules); "
                            f"export it --to {engine}{' or --to kubernetes' if engine in ('vllm', 'sglang') else ''}, or "
                            f"re-plan with --engine {target}", field="--to")
    return EXPORTERS[target](plan, context)


__all__ = ["EXPORTERS", "Bundle", "ExportContext", "ExportRefused", "Launch", "build_bundle"]
