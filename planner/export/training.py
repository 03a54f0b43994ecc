"""`plan export --to deepspeed` and `--to megatron`: training plans.

DeepSpeed (0.19.x): the ZeRO config JSON whose batch triple satisfies DeepSpeed's own assertion
train_batch_size == micro_batch_per_gpu x gradient_accumulation_steps x data-parallel world size
(runtime/config.py _batch_assertion), offload_param only with stage 3 (runtime/zero/config.py),
ZeRO below 2 with a pipeline (runtime/pipe/engine.py), plus the hostfile and the `deepspeed`
launcher with --include naming each machine's devices in rank order (docs/_tutorials/
getting-started.md). Megatron-LM (d98e8a6): `torchrun` per machine running pretrain_gpt.py with
the parallel sizes, --pipeline-model-parallel-layout for uneven stages (megatron/core/
transformer/pipeline_parallel_layer_layout.py), sequence parallelism, recomputation, the
distributed optimizer, micro and global batch, and CUDA_DEVICE_MAX_CONNECTIONS=1, which
megatron/training/arguments.py requires with tensor parallelism before Blackwell."""

from __future__ import annotations

import json

from planner.export.bundle import Bundle, ExportRefused, Launch, placeholder, to_script
from planner.export.context import (
    ExportContext,
    address_of,
    address_placeholders,
    group_by_machine,
    model_reference,
    require_plan,
    require_vendors,
)
from planner.export.runbook import Runbook, placeholder_lines, plan_intro
from planner.schemas.plan import ServePlan, TrainDeviceOut, TrainPlan

MASTER_PORT = 29500  # torch.distributed's usual rendezvous port (deepspeed --master_port default)
MEGATRON_PORT = 6000  # the port Megatron-LM's examples use


def _train_only(plan: ServePlan | TrainPlan, target: str) -> TrainPlan:
    require_plan(plan, target)
    if not isinstance(plan, TrainPlan):
        raise ExportRefused(f"{target} exports training plans; serving plans go to vllm, sglang, llama.cpp, exo or mlx-lm",
                            field="--to")
    return plan


def _by_rank(plan: TrainPlan, *, tp: int, dp: int) -> list[TrainDeviceOut]:
    """Devices by global rank: tensor rank fastest, then data-parallel rank, then pipeline stage
    (Megatron's default order tp-cp-ep-dp-pp; DeepSpeed's PipeDataParallelTopology, pipe slowest)."""
    ranked: dict[int, TrainDeviceOut] = {}
    for rank in plan.ranks:
        for stage in rank.stages:
            for t, device in enumerate(stage.devices):
                ranked[stage.index * dp * tp + rank.index * tp + t] = device
    return [ranked[g] for g in sorted(ranked)]


def _half(plan: TrainPlan, context: ExportContext) -> str | None:
    """bf16 where every device has it (NVIDIA compute capability 8.0+, AMD), else fp16; None for fp32 training."""
    if not plan.request.mixed_precision:
        return None
    specs = [context.hardware[d.type] for r in plan.ranks for s in r.stages for d in s.devices]
    bf16 = all(s.vendor == "amd" or (s.capability or 0) >= 8.0 for s in specs)  # AMD Instinct GPUs have bf16
    return "bf16" if bf16 else "fp16"


def build_deepspeed_config(plan: TrainPlan, context: ExportContext) -> dict:
    """The ds_config of a training plan, refused where DeepSpeed would refuse it."""
    lay = plan.layout
    assert lay is not None
    if lay.pipeline_parallel_size > 1 and lay.zero_stage >= 2:
        raise ExportRefused("deepspeed: ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism "
                            "(runtime/pipe/engine.py)", field="--to")
    if lay.offload == "optimizer+params" and lay.zero_stage != 3:
        raise ExportRefused("deepspeed: offload_param is valid only with ZeRO stage 3", field="--to")
    if lay.global_batch_size != lay.micro_batch_size * lay.gradient_accumulation_steps * lay.data_parallel_size:
        raise ExportRefused(f"deepspeed: global batch {lay.global_batch_size} is not micro {lay.micro_batch_size} x "
                            f"accumulation {lay.gradient_accumulation_steps} x data-parallel {lay.data_parallel_size}",
                            field="--to")
    config: dict = {"train_batch_size": lay.global_batch_size, "train_micro_batch_size_per_gpu": lay.micro_batch_size,
                    "gradient_accumulation_steps": lay.gradient_accumulation_steps}
    half = _half(plan, context)
    if half == "bf16":
        config["bf16"] = {"enabled": True}
    elif half == "fp16":
        config["fp16"] = {"enabled": True, "loss_scale": 0}
    zero: dict = {"stage": lay.zero_stage}
    if lay.zero_stage:
        zero |= {"overlap_comm": True, "contiguous_gradients": True}
    if lay.offload in ("optimizer", "optimizer+params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if lay.offload == "optimizer+params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if lay.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config["zero_optimization"] = zero
    return config


def to_deepspeed(plan: ServePlan | TrainPlan, context: ExportContext) -> Bundle:
    """The DeepSpeed bundle: ds_config.json, hostfile and the launcher command."""
    target = "deepspeed"
    plan = _train_only(plan, target)
    require_vendors(plan, context, target, ("nvidia", "amd"))
    lay = plan.layout
    assert lay is not None
    if lay.tensor_parallel_size > 1:
        raise ExportRefused("deepspeed: the plan uses tensor parallelism, which plain DeepSpeed does not run; "
                            "export it --to megatron", field="--to")
    config = build_deepspeed_config(plan, context)
    runs = group_by_machine(plan, _by_rank(plan, tp=1, dp=lay.data_parallel_size), target=target, what="the plan",
                            equal=False)
    head = runs[0][0]
    placeholders = address_placeholders([head]) | {"TRAIN_SCRIPT": "your training script: it adds DeepSpeed's arguments "
                                                   "(deepspeed.add_config_arguments(parser)) and calls "
                                                   "deepspeed.initialize(args=args, model=..., model_parameters=...)"}
    hostfile = "".join(f"{m.address or m.name} slots={len(ds)}\n" for m, ds in runs)
    include = "@".join(f"{m.address or m.name}:{','.join(str(d.index) for d in ds)}" for m, ds in runs)
    argv = ("deepspeed", "--hostfile", "hostfile", "--include", include, "--master_addr", address_of(head),
            "--master_port", str(head.rendezvous_port or MASTER_PORT), placeholder("TRAIN_SCRIPT"),
            "--deepspeed", "--deepspeed_config", "ds_config.json")
    launch = Launch(head.name, "deepspeed launcher (reaches every machine over ssh)", argv)
    files = {"ds_config.json": json.dumps(config, indent=2) + "\n", "hostfile": hostfile,
             "launch.sh": to_script(launch, placeholders=placeholders, header=[
                 f"Run from this folder on {head.name}; DeepSpeed {plan.request.engine.version}."])}
    book = Runbook(f"DeepSpeed launch: {plan.request.model.name} on {plan.inventory.name}",
                   plan_intro(plan, "deepspeed", "ds_config keys of DeepSpeed 0.19 (runtime/zero/config.py)"))
    book.add("What the plan decided", _train_rows(plan) + [
        "", f"`ds_config.json` holds it: ZeRO stage {lay.zero_stage}, offload {lay.offload}, micro-batch "
        f"{lay.micro_batch_size} x accumulation {lay.gradient_accumulation_steps} x {lay.data_parallel_size} data-parallel "
        f"ranks = {lay.global_batch_size} sequences of {lay.sequence_length} tokens per step."])
    notes = [f"- The training script must build the model with {lay.recompute} activation recomputation "
             "(e.g. `model.gradient_checkpointing_enable()`); DeepSpeed's config does not turn it on."] if lay.recompute != "none" else []
    if lay.pipeline_parallel_size > 1:
        layers = [s.layers[1] - s.layers[0] for s in plan.ranks[0].stages]
        notes.append(f"- The script wraps the model in `PipelineModule(num_stages={lay.pipeline_parallel_size}, "
                     f"partition_method='uniform')`: stages of {layers} layers.")
    if plan.request.lora:
        notes.append("- Adapters only: the script wraps the base model with PEFT LoRA before deepspeed.initialize.")
    book.add("Before you start", ["- DeepSpeed on every machine, passwordless ssh from the first to the others, the "
                                  "same paths everywhere.",
                                  "- The launcher passes `--deepspeed --deepspeed_config ds_config.json` to the script: let "
                                  "`deepspeed.initialize(args=args, ...)` read it, and give no `config=` as well (DeepSpeed "
                                  "refuses a config given both ways).", *notes, "", *placeholder_lines(placeholders)])
    book.add("Steps, in order", [f"- `launch.sh` on {head.name}: the launcher starts every rank over ssh (or run "
                                 "`deepspeed --no_ssh --node_rank=N ...` on each machine)."])
    book.add("Ports", [f"- torch.distributed rendezvous: {address_of(head)}:{head.rendezvous_port or MASTER_PORT}."])
    book.add("How to tell it is up, and that it is the plan", [
        f"- DeepSpeed logs `train_batch_size ... {lay.global_batch_size}` and `zero_optimization` with stage {lay.zero_stage}.",
        f"- Expected: {plan.performance.step_time_s:.2f} s per step, {plan.performance.tokens_per_s:,.0f} tokens/s "
        f"(MFU {plan.performance.mfu:.0%})." if plan.performance else "-"])
    files["README.md"] = book.render()
    return Bundle(target, dict(sorted(files.items())), (launch,))


def _train_rows(plan: TrainPlan) -> list[str]:
    rows = ["| data-parallel rank | stage | layers | devices |", "|---|---|---|---|"]
    for r in plan.ranks:
        for s in r.stages:
            rows.append(f"| {r.index} | {s.index} | {s.layers[0]}-{s.layers[1] - 1} | {', '.join(d.id for d in s.devices)} |")
    return rows


def megatron_layout(layers: list[int]) -> str | None:
    """--pipeline-model-parallel-layout for uneven stages (None when Megatron's even split is the plan's):
    E the embedding, t a decoder layer, L the loss, | between stages."""
    if len(set(layers)) == 1:
        return None
    parts = [f"t*{n}" for n in layers]
    parts[0] = "E" + parts[0]
    parts[-1] = parts[-1] + "L"
    return "|".join(parts)


def megatron_model_flags(context: ExportContext) -> list[str]:
    """The model's shape in Megatron's flags (dense and MoE GQA decoders)."""
    m = context.model
    if m.mla is not None or any(t != "full" for t in m.layer_types):
        raise ExportRefused(f"megatron: the export writes the flags of full-attention GQA decoders; {m.name} uses "
                            f"{'latent attention' if m.mla else 'other attention layers'}", field="--to")
    flags = ["--num-layers", str(m.num_layers), "--hidden-size", str(m.hidden_size),
             "--num-attention-heads", str(m.num_attention_heads), "--seq-length", "SEQ",
             "--max-position-embeddings", str(m.max_context)]
    if m.intermediate_size:
        flags += ["--ffn-hidden-size", str(m.intermediate_size)]
    if m.num_key_value_heads != m.num_attention_heads:
        flags += ["--group-query-attention", "--num-query-groups", str(m.num_key_value_heads)]
    if m.head_dim * m.num_attention_heads != m.hidden_size:
        flags += ["--kv-channels", str(m.head_dim)]
    flags += ["--position-embedding-type", "rope", "--normalization", "LayerNorm" if m.norm_bias else "RMSNorm"]
    if m.mlp_gated:
        flags.append("--swiglu")
    if not m.tie_word_embeddings:
        flags.append("--untie-embeddings-and-output-weights")
    if not (m.qkv_bias or m.mlp_bias or m.o_bias):
        flags.append("--disable-bias-linear")
    if m.qkv_bias and not (m.mlp_bias or m.o_bias):
        flags += ["--disable-bias-linear", "--add-qkv-bias"]
    if m.moe is not None:
        flags += ["--num-experts", str(m.moe.num_experts), "--moe-router-topk", str(m.moe.experts_per_token),
                  "--moe-ffn-hidden-size", str(m.moe.expert_intermediate_size)]
    return flags


def to_megatron(plan: ServePlan | TrainPlan, context: ExportContext) -> Bundle:
    """The Megatron-LM bundle: one torchrun per machine."""
    target = "megatron"
    plan = _train_only(plan, target)
    require_vendors(plan, context, target, ("nvidia",))
    lay = plan.layout
    assert lay is not None
    if lay.zero_stage > 1 or lay.offload != "none":
        raise ExportRefused(f"megatron: ZeRO stage {lay.zero_stage} with offload {lay.offload} is not Megatron's; its "
                            f"distributed optimizer is stage 1 without offload (export --to deepspeed)", field="--to")
    tp, pp, dp = lay.tensor_parallel_size, lay.pipeline_parallel_size, lay.data_parallel_size
    if lay.global_batch_size % (lay.micro_batch_size * dp):
        raise ExportRefused(f"megatron: global batch {lay.global_batch_size} is not divisible by micro-batch "
                            f"{lay.micro_batch_size} x data-parallel {dp}", field="--to")
    runs = group_by_machine(plan, _by_rank(plan, tp=tp, dp=dp), target=target, what="the plan", equal=True)
    head = runs[0][0]
    model_arg, placeholders = model_reference(plan, context)
    placeholders |= address_placeholders([head]) | {
        "DATA_PATH": "the Megatron-preprocessed dataset prefix (tools/preprocess_data.py)",
        "TRAIN_ITERS": "optimizer steps to run", "LR": "peak learning rate", "SAVE_DIR": "checkpoint directory",
        "SAVE_INTERVAL": "optimizer steps between checkpoints (Megatron requires it with --save)"}
    model_flags = [str(lay.sequence_length) if f == "SEQ" else f for f in megatron_model_flags(context)]
    flags = ["--tensor-model-parallel-size", str(tp), "--pipeline-model-parallel-size", str(pp)]
    layout = megatron_layout([s.layers[1] - s.layers[0] for s in plan.ranks[0].stages]) if pp > 1 else None
    if layout:
        flags += ["--pipeline-model-parallel-layout", layout]
    if lay.sequence_parallel and tp > 1:
        flags.append("--sequence-parallel")
    if lay.recompute == "full":
        flags += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    elif lay.recompute == "selective":
        flags += ["--recompute-granularity", "selective"]
    if lay.zero_stage == 1:
        flags.append("--use-distributed-optimizer")
    flags += ["--micro-batch-size", str(lay.micro_batch_size), "--global-batch-size", str(lay.global_batch_size),
              *model_flags]
    half = _half(plan, context)
    if half:
        flags.append(f"--{half}")
    flags += ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", model_arg,
              "--data-path", placeholder("DATA_PATH"), "--train-iters", placeholder("TRAIN_ITERS"),
              "--lr", placeholder("LR"), "--save", placeholder("SAVE_DIR"), "--save-interval", placeholder("SAVE_INTERVAL")]
    env = [("CUDA_DEVICE_MAX_CONNECTIONS", "1")] if tp > 1 else []
    files: dict[str, str] = {}
    launches: list[Launch] = []
    for rank, (machine, devices) in enumerate(runs):
        argv = ("torchrun", "--nproc_per_node", str(len(devices)), "--nnodes", str(len(runs)), "--node_rank", str(rank),
                "--master_addr", address_of(head), "--master_port", str(head.rendezvous_port or MEGATRON_PORT),
                "pretrain_gpt.py", *flags)
        launch = Launch(machine.name, f"node-rank {rank} of {len(runs)}", argv,
                        tuple([("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", ",".join(str(d.index) for d in devices)),
                               *env]))
        files[f"{machine.name}.sh"] = to_script(launch, placeholders=placeholders, header=[
            f"{launch.role}: run on {machine.name} from a Megatron-LM checkout ({plan.request.engine.version})."])
        launches.append(launch)
    book = Runbook(f"Megatron-LM launch: {plan.request.model.name} on {plan.inventory.name}",
                   plan_intro(plan, "megatron", "arguments of Megatron-LM d98e8a6 (megatron/training/arguments.py)"))
    book.add("What the plan decided", _train_rows(plan) + [
        "", f"TP {tp} x PP {pp} x DP {dp}; micro-batch {lay.micro_batch_size}, global batch {lay.global_batch_size} "
        f"({lay.global_batch_size // (lay.micro_batch_size * dp)} micro-batches per step), recompute {lay.recompute}"
        + (f", layout `{layout}`" if layout else "") + "."])
    book.add("Before you start", [
        "- The same Megatron-LM checkout and PyTorch on every machine; run from its root (pretrain_gpt.py).",
        "- Rotary base and scaling, dropout and the learning-rate schedule are the model's and yours: add them to the "
        "scripts; the plan fixes the parallel layout, batch and shapes above.", "", *placeholder_lines(placeholders)])
    book.add("Steps, in order", [f"- Run `{m.name}.sh` on {m.name} (any order; torchrun waits for all {len(runs)})."
                                 for m, _ in runs])
    book.add("Ports", [f"- torchrun rendezvous: {address_of(head)}:{head.rendezvous_port or MEGATRON_PORT}."])
    book.add("How to tell it is up, and that it is the plan", [
        f"- Megatron prints `using world size: {tp * pp * dp}, data-parallel size: {dp}, ... tensor-model-parallel size: "
        f"{tp}, ... pipeline-model-parallel size: {pp}`.",
        f"- Expected: {plan.performance.step_time_s:.2f} s per iteration (`elapsed time per iteration (ms)`)."
        if plan.performance else "-"])
    files["README.md"] = book.render()
    return Bundle(target, dict(sorted(files.items())), tuple(launches))
