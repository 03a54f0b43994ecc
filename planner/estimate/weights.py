"""Bytes of every weight tensor under a precision mix, including llama.cpp's per-tensor GGUF mixes."""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.estimate.parameters import TensorCount, estimate_model_tensors
from planner.schemas.model import ModelSpec
from planner.schemas.precision import COMPONENTS, Component, PrecisionFormat, PrecisionMix, TensorRule


@dataclass(frozen=True)
class TensorBytes:
    """A tensor, the format it is stored in and its size."""

    tensor: TensorCount
    format_id: str
    bits_per_weight: float

    @property
    def bytes(self) -> float:
        return self.tensor.params * self.bits_per_weight / 8.0


@dataclass(frozen=True)
class WeightEstimate:
    """Weight bytes by component and by block."""

    tensors: tuple[TensorBytes, ...]
    by_component: dict[Component, float]
    by_layer: tuple[float, ...]  # bytes of each transformer block
    outer_bytes: float  # embedding + final norm + lm_head
    derived: dict = field(default_factory=dict, compare=False, repr=False)  # caches of sums derived from `tensors`

    @property
    def total_bytes(self) -> float:
        return sum(self.by_component.values())

    def bits_per_weight(self, parameters: int) -> float:
        """Average bits per parameter over the whole model."""
        return 8.0 * self.total_bytes / parameters


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of layers that keep more bits (src/llama-quant.cpp, use_more_bits)."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _layer_selected(selector: str, layer: int | None, n_layers: int) -> bool:
    if selector == "all":
        return True
    if layer is None:
        return False
    if selector == "use_more_bits":
        return use_more_bits(layer, n_layers)
    kind, _, value = selector.partition(":")
    if kind == "first":
        return layer < int(value)
    if kind == "fraction":
        return layer < n_layers // int(value)
    raise ValueError(f"unknown layer selector '{selector}'")


def _rule_applies(rule: TensorRule, tensor: TensorCount, model: ModelSpec) -> bool:
    kinds = {tensor.kind}
    if tensor.kind == "token_embd" and model.tie_word_embeddings:
        kinds.add("lm_head")  # with no separate output tensor, llama.cpp treats token_embd as the output
    if rule.tensor is not None and rule.tensor not in kinds:
        return False
    if rule.component is not None and rule.component != tensor.component:
        return False
    if rule.min_gqa is not None and model.num_attention_heads // model.num_key_value_heads < rule.min_gqa:
        return False
    if rule.num_experts is not None and (model.moe is None or model.moe.num_experts != rule.num_experts):
        return False
    return _layer_selected(rule.layers, tensor.layer, model.num_layers)


def resolve_tensor_format(tensor: TensorCount, model: ModelSpec, mix: PrecisionMix) -> tuple[str, float]:
    """The format id a tensor is stored in and its bits per weight."""
    chosen = mix.for_component(tensor.component)
    if not tensor.is_matrix or tensor.component == "router":
        return f"unquantised-{chosen.vector_bits:g}bit", chosen.vector_bits
    fmt: PrecisionFormat = chosen
    if fmt.is_mix:
        target = next((r.format for r in fmt.rules if _rule_applies(r, tensor, model)), fmt.base)
        fmt = mix.formats[target]
    if fmt.row_multiple and tensor.row_size % fmt.row_multiple and fmt.fallback:
        fmt = mix.formats[fmt.fallback]  # k-quants need rows that are a multiple of 256
    return fmt.id, fmt.bits_per_weight()


def _checkpoint_tensors(model: ModelSpec) -> list[TensorBytes]:
    """The served tensors as they are on disk (blocks beyond num_layers, e.g. MTP, are not served)."""
    out = []
    assert model.checkpoint is not None
    for t in model.checkpoint.tensors:
        if t.layer is not None and t.layer >= model.num_layers:
            continue
        count = TensorCount(t.component, t.kind, t.params, t.row_size, t.layer)
        bits = 8.0 * t.bytes / t.params if t.params else 0.0
        out.append(TensorBytes(count, t.dtype.lower(), bits))
    return out


def estimate_weight_bytes(model: ModelSpec, mix: PrecisionMix) -> WeightEstimate:
    """Bytes of every tensor of the served model under `mix` (as on disk for the checkpoint format)."""
    out: list[TensorBytes] = []
    if mix.weights.id == "checkpoint" and model.checkpoint is not None:
        by_component: dict[Component, float] = {c: 0.0 for c in COMPONENTS}
        by_layer = [0.0] * model.num_layers
        outer = 0.0
        items = _checkpoint_tensors(model)
        for item in items:
            by_component[item.tensor.component] += item.bytes
            if item.tensor.layer is None:
                outer += item.bytes
            else:
                by_layer[item.tensor.layer] += item.bytes
        return WeightEstimate(tuple(items), by_component, tuple(by_layer), outer)
    by_component: dict[Component, float] = {c: 0.0 for c in COMPONENTS}
    by_layer = [0.0] * model.num_layers
    outer = 0.0
    for tensor in estimate_model_tensors(model):
        format_id, bits = resolve_tensor_format(tensor, model, mix)
        item = TensorBytes(tensor, format_id, bits)
        out.append(item)
        by_component[tensor.component] += item.bytes
        if tensor.layer is None:
            outer += item.bytes
        else:
            by_layer[tensor.layer] += item.bytes
    return WeightEstimate(tuple(out), by_component, tuple(by_layer), outer)
