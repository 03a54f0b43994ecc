"""Replica recipes: an ordered chain of stages (unit type + contiguous layers) with a number of
users, its memory fit checked and its speed computed. The solver only chooses how many copies of
each recipe to run; every non-linear number is computed here."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property

from planner.candidates.classes import DeviceClass, UnitType, build_device_classes, tp_options
from planner.estimate.activations import estimate_logits_bytes, estimate_prefill_activation_bytes
from planner.estimate.kv_cache import estimate_cached_tokens, estimate_kv_bytes_per_token_layer
from planner.estimate.memory import estimate_shard_fraction
from planner.estimate.performance import ReplicaSpeed, StagePlan, estimate_replica_speed
from planner.estimate.weights import WeightEstimate, estimate_weight_bytes
from planner.schemas.inventory import Cluster
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix
from planner.schemas.serving import ServeRequest
from planner.schemas.speed import SpeedCalibration
from planner.topology import Topology, build_topology

MAX_TYPES_PER_RECIPE = 3
MAX_COUNT_COMBINATIONS = 4000
SMALL_CLUSTER_DEVICES = 64  # up to this size every mix of device types is tried


@dataclass(frozen=True)
class Stage:
    """One pipeline stage of a recipe."""

    unit: UnitType
    first_layer: int
    last_layer_exclusive: int
    need_bytes: float  # per device of the stage


@dataclass(frozen=True)
class Recipe:
    """A replica layout with its users, memory and speed."""

    index: int
    stages: tuple[Stage, ...]
    users: int
    speed: ReplicaSpeed
    kv_capacity_tokens: int
    devices_by_class: tuple[tuple[int, int], ...]  # (class index, devices)
    price_usd: float | None
    max_users: int = 0  # users the replica could hold at the requested context

    @property
    def devices(self) -> int:
        return sum(n for _, n in self.devices_by_class)

    @property
    def tokens_per_s(self) -> float:
        return self.speed.decode_tokens_per_s


@dataclass(frozen=True)
class Rejection:
    """A layout that was considered and why it cannot be used."""

    layout: str
    reason: str


@dataclass
class CandidateSet:
    """Everything the solver chooses from."""

    model: ModelSpec
    mix: PrecisionMix
    request: ServeRequest
    cluster: Cluster
    classes: list[DeviceClass]
    units: list[UnitType]
    recipes: list[Recipe] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    user_values: list[int] = field(default_factory=list)


class _Sizer:
    """Per-layer bytes for each tensor-parallel size, computed once."""

    def __init__(self, model: ModelSpec, mix: PrecisionMix, request: ServeRequest, weights: WeightEstimate) -> None:
        self.model, self.mix, self.request, self.weights = model, mix, request, weights

    @cached_property
    def _tensors(self):
        return self.weights.tensors

    def layer_weights(self, tp: int) -> list[float]:
        return self._layer_weights(tp)[0]

    def outer(self, tp: int) -> tuple[float, float]:
        """(embedding bytes, lm_head + final norm bytes) per rank."""
        return self._layer_weights(tp)[1]

    def _layer_weights(self, tp: int):
        cache = self.__dict__.setdefault("_lw", {})
        if tp not in cache:
            per_layer = [0.0] * self.model.num_layers
            embed = head = 0.0
            for item in self._tensors:
                size = item.bytes * estimate_shard_fraction(item.tensor, self.model, tp)
                if item.tensor.layer is not None:
                    per_layer[item.tensor.layer] += size
                elif item.tensor.kind == "token_embd":
                    embed += size
                else:
                    head += size
            if self.model.tie_word_embeddings:
                head += embed  # the last stage needs the (shared) matrix for the output projection
            cache[tp] = (per_layer, (embed, head))
        return cache[tp]

    def layer_kv(self, tp: int, users: int) -> list[float]:
        cache = self.__dict__.setdefault("_kv", {})
        if (tp, users) not in cache:
            per_token = estimate_kv_bytes_per_token_layer(self.model, self.mix.kv_cache_dtype, tp)
            cache[(tp, users)] = [users * per_token * estimate_cached_tokens(self.model, i, self.request.context)
                                  for i in range(self.model.num_layers)]
        return cache[(tp, users)]

    def fixed(self, tp: int, users: int, last: bool) -> float:
        cache = self.__dict__.setdefault("_fixed", {})
        if (tp, users, last) not in cache:
            chunk = min(self.request.prefill_chunk, self.request.context * users)
            act = estimate_prefill_activation_bytes(self.model, chunk, tp)
            cache[(tp, users, last)] = act + (estimate_logits_bytes(self.model, users) if last else 0.0)
        return cache[(tp, users, last)]


def _user_values(users: int, max_replicas: int, coarse: bool = False) -> list[int]:
    """Users per replica worth considering: every even split ceil/floor(U / R), and 1. Coarse
    (for quick what-if checks): only R = 1, 2, 4, 8, ..."""
    values = {1, users}
    replicas = 1
    while replicas <= min(users, max_replicas):
        values.add(math.ceil(users / replicas))
        values.add(users // replicas)
        replicas = replicas * 2 if coarse else replicas + 1
    return sorted(v for v in values if v >= 1)


def _fill(units: list[UnitType], users: int, sizer: _Sizer, counts: list[int] | None = None) -> list[tuple[int, int, float]] | str:
    """Contiguous layers for `units` in order (fastest first): each takes as many layers as fit,
    leaving at least one per remaining stage; the last takes the rest. With `counts`, each stage
    takes exactly that many layers. Returns (start, end, need) per stage, or the reason it does
    not fit."""
    model = sizer.model
    total = model.num_layers
    start = 0
    out = []
    overhead = sizer.request.overhead_factor
    for k, unit in enumerate(units):
        first, last = k == 0, k == len(units) - 1
        layer_w = sizer.layer_weights(unit.tp)
        layer_kv = sizer.layer_kv(unit.tp, users)
        embed, head = sizer.outer(unit.tp)
        fixed_w = (embed if first else 0.0) + (head if last else 0.0)
        if first and last and sizer.model.tie_word_embeddings:
            fixed_w -= embed  # one stage holds the shared matrix once
        fixed = sizer.fixed(unit.tp, users, last)
        budget = unit.device_class.budget_bytes
        need = fixed + fixed_w * (1 + overhead)
        if last:
            for i in range(start, total):
                need += layer_w[i] * (1 + overhead) + layer_kv[i]
            if need > budget:
                return (f"stage {k} on {unit.key} needs {need / 1e9:,.1f} GB for layers {start}-{total - 1}, "
                        f"it has {budget / 1e9:,.1f} GB")
            out.append((start, total, need))
            return out
        end = start
        limit = total - (len(units) - k - 1) if counts is None else start + counts[k]
        while end < limit:
            extra = layer_w[end] * (1 + overhead) + layer_kv[end]
            if need + extra > budget:
                if counts is not None:
                    return f"stage {k} on {unit.key} cannot hold its {counts[k]} layers ({budget / 1e9:,.1f} GB budget)"
                break
            need += extra
            end += 1
        if end == start:
            return f"stage {k} on {unit.key} cannot hold a single layer ({budget / 1e9:,.1f} GB budget)"
        out.append((start, end, need))
        start = end
    return "no stages"


def _speed_key(unit: UnitType, calibration: SpeedCalibration) -> float:
    return unit.tp * unit.device_class.spec.memory_bandwidth_gb_s * calibration.quantized_bandwidth_efficiency


class RecipeBuilder:
    """Enumerates recipes for a cluster, model and request."""

    def __init__(self, model: ModelSpec, mix: PrecisionMix, request: ServeRequest, cluster: Cluster,
                 calibrations: dict[str, SpeedCalibration], topology: Topology | None = None, coarse: bool = False) -> None:
        self.coarse = coarse
        self.model, self.mix, self.request, self.cluster = model, mix, request, cluster
        self.calibrations = calibrations
        self.topology = topology or build_topology(cluster)
        self.weights = estimate_weight_bytes(model, mix)
        self.sizer = _Sizer(model, mix, request, self.weights)
        self.classes = build_device_classes(cluster, request)
        self.units = [UnitType(c, t) for c in self.classes for t in tp_options(c, model)]
        self._routes: dict[tuple[int, int, bool], tuple[float, float]] = {}
        self._prices: dict[int, float | None] = {}

    def calibration(self, unit: UnitType) -> SpeedCalibration:
        return self.calibrations[unit.device_class.spec.calibration_class]

    def _route(self, a: DeviceClass, b: DeviceClass, same_node: bool) -> tuple[float, float]:
        key = (a.index, b.index, same_node)
        if key not in self._routes:
            if same_node or (a.index == b.index and len(a.nodes) == 1):
                src, dst = a.device_ids[0][0], a.device_ids[0][-1]
            elif a.index == b.index:
                src, dst = a.device_ids[0][0], a.device_ids[1][0]
            else:
                src, dst = a.device_ids[0][0], b.device_ids[0][0]
            route = self.topology.route(src, dst) if src != dst else None
            self._routes[key] = (route.bandwidth_gb_s, route.latency_us) if route else (a.link.bandwidth_gb_s, a.link.latency_us)
        return self._routes[key]

    def _ordered(self, units: list[UnitType]) -> list[UnitType]:
        return sorted(units, key=lambda u: (-_speed_key(u, self.calibration(u)), u.device_class.index, u.tp))

    def build_recipe(self, units: list[UnitType], users: int, index: int, counts: list[int] | None = None) -> Recipe | str:
        """A recipe from units (any order; kept in order with `counts`) and users, or the reason it cannot be built."""
        ordered = self._ordered(units) if counts is None else list(units)
        filled = _fill(ordered, users, self.sizer, counts)
        if isinstance(filled, str):
            return filled
        plans = []
        used_in_node: dict[int, int] = {}
        for k, (unit, (start, end, _)) in enumerate(zip(ordered, filled)):
            cls = unit.device_class
            tp_bw, tp_lat = self._route(cls, cls, True) if unit.tp > 1 else (0.0, 0.0)
            next_bw = next_lat = 0.0
            used_in_node[cls.index] = used_in_node.get(cls.index, 0) + unit.tp
            if k + 1 < len(ordered):
                nxt = ordered[k + 1].device_class
                same = nxt.index == cls.index and used_in_node[cls.index] + ordered[k + 1].tp <= cls.devices_per_node
                next_bw, next_lat = self._route(cls, nxt, same)
            plans.append(StagePlan(cls.spec, range(start, end), unit.tp, self.calibration(unit), tp_bw, tp_lat, next_bw, next_lat))
        speed = estimate_replica_speed(self.model, self.mix, self.weights, plans, users=users, context=self.request.context,
                                       prompt_tokens=self.request.prompt_tokens)
        if self.request.min_tokens_per_s and speed.decode_tokens_per_s_per_user < self.request.min_tokens_per_s:
            return (f"{speed.decode_tokens_per_s_per_user:,.1f} tokens/s per user, below the "
                    f"{self.request.min_tokens_per_s:g} asked for")
        capacity, most_users = self._kv_capacity(ordered, filled, users)
        by_class: dict[int, int] = {}
        for unit in ordered:
            by_class[unit.device_class.index] = by_class.get(unit.device_class.index, 0) + unit.tp
        prices = [self._price(unit.device_class) for unit in ordered]
        price = None if any(p is None for p in prices) else sum(p * u.tp for p, u in zip(prices, ordered))
        stages = tuple(Stage(u, s, e, need) for u, (s, e, need) in zip(ordered, filled))
        return Recipe(index, stages, users, speed, capacity, tuple(sorted(by_class.items())), price, most_users)

    def _price(self, cls: DeviceClass) -> float | None:
        if cls.index not in self._prices:
            device = next(d for d in self.cluster.devices if d.id == cls.device_ids[0][0])
            self._prices[cls.index] = device.price_usd
        return self._prices[cls.index]

    def _kv_capacity(self, units: list[UnitType], filled: list[tuple[int, int, float]], users: int) -> tuple[int, int]:
        """(KV-cache tokens one sequence could hold, users the replica holds at the requested context).
        The tightest stage decides; sliding layers keep at most their window; whole pages of
        block_size tokens, as vLLM allocates them; each extra user also needs its fp32 logits."""
        tokens: int | None = None
        most_users: int | None = None
        block = self.request.block_size
        for k, (unit, (start, end, need)) in enumerate(zip(units, filled)):
            per_token_layer = estimate_kv_bytes_per_token_layer(self.model, self.mix.kv_cache_dtype, unit.tp)
            layers = range(start, end)
            kv_now = sum(self.sizer.layer_kv(unit.tp, users)[start:end])
            free = unit.device_class.budget_bytes - (need - kv_now)

            stage_tokens = self._tokens_fitting(layers, per_token_layer, free) // block * block
            per_user = sum(self.sizer.layer_kv(unit.tp, 1)[start:end]) + (self.model.vocab_size * 4 if k == len(units) - 1 else 0.0)
            stage_users = int((free + (self.model.vocab_size * 4 * users if k == len(units) - 1 else 0.0)) // per_user) if per_user > 0 else 0
            tokens = stage_tokens if tokens is None else min(tokens, stage_tokens)
            most_users = stage_users if most_users is None else min(most_users, stage_users)
        return tokens or 0, most_users or 0

    def _tokens_fitting(self, layers: range, per_token_layer: float, free: float) -> int:
        """The longest context whose cache fits in `free` over `layers`: each layer holds
        min(context, its window) tokens, so the cost is piecewise linear in the context."""
        if free <= 0 or per_token_layer <= 0:
            return 0
        windows = sorted(self.model.sliding_window if self.model.layer_type(i) == "sliding" and self.model.sliding_window
                         else math.inf for i in layers)
        budget = free / per_token_layer  # layer-tokens the memory holds
        done = 0.0  # tokens already placed in layers whose window is reached
        previous = 0.0
        for index, window in enumerate(windows):
            growing = len(windows) - index  # layers still growing past `previous`
            if window == math.inf:
                return int(previous + (budget - done) / growing)
            step = (window - previous) * growing
            if step >= budget - done:
                return int(previous + (budget - done) / growing)
            done += step
            previous = window
        return self.model.max_context  # every layer slides: any context the model supports fits

    def build(self) -> CandidateSet:
        """Every recipe worth considering, and every rejection with its reason."""
        out = CandidateSet(self.model, self.mix, self.request, self.cluster, self.classes, self.units)
        if not self.units:
            out.rejections.append(Rejection("any layout", "no device class supports a legal tensor-parallel size"))
            return out
        total_devices = sum(c.devices for c in self.classes)
        out.user_values = _user_values(self.request.users, total_devices, self.coarse)
        seen: set[tuple] = set()
        for users in out.user_values:
            minimal: dict[int, int] = {}
            for ui, unit in enumerate(self.units):
                found = self._smallest_pipeline(unit, users)
                if isinstance(found, Recipe):
                    minimal[ui] = len(found.stages)
                    self._add(out, found, seen)
                else:
                    out.rejections.append(Rejection(f"{unit.key} for {users} user(s)", found))
            self._mixed(out, users, minimal, seen, total_devices)
        baseline = self.memory_proportional_recipe(self.request.users)
        if isinstance(baseline, Recipe):
            self._add(out, baseline, seen)  # the engines' default split is always a candidate
        out.recipes = _without_dominated(out.recipes)
        return out

    def memory_proportional_recipe(self, users: int) -> Recipe | str:
        """llama.cpp's and exo's default: one pipeline over every device in inventory order, layers
        in proportion to each device's memory budget (largest remainder)."""
        units: list[UnitType] = []
        by_id = {}
        for cls in self.classes:
            for ids in cls.device_ids:
                for device_id in ids:
                    by_id[device_id] = UnitType(cls, 1)
        units = [by_id[d.id] for d in self.cluster.devices if d.id in by_id]
        if len(units) > self.model.num_layers:
            return "more devices than layers"
        budgets = [max(u.device_class.budget_bytes, 0.0) for u in units]
        total = sum(budgets) or 1.0
        shares = [self.model.num_layers * b / total for b in budgets]
        counts = [max(1, int(x)) for x in shares]
        order = sorted(range(len(units)), key=lambda i: (-(shares[i] - int(shares[i])), i))
        k = 0
        while sum(counts) < self.model.num_layers:
            counts[order[k % len(order)]] += 1
            k += 1
        while sum(counts) > self.model.num_layers:
            i = max(range(len(counts)), key=lambda j: (counts[j], -j))
            counts[i] -= 1
        return self.build_recipe(units, users, 0, counts)

    def _smallest_pipeline(self, unit: UnitType, users: int) -> Recipe | str:
        """The fewest stages of `unit` that hold the model for `users` (binary search: more stages
        of the same unit never hold less), or why even the most that exist do not."""
        most = min(unit.available, self.model.num_layers)
        largest = self.build_recipe([unit] * most, users, 0)
        if not isinstance(largest, Recipe):
            return f"{most} stage(s): {largest}"
        low, high, best = 1, most, largest
        while low < high:
            middle = (low + high) // 2
            result = self.build_recipe([unit] * middle, users, 0)
            if isinstance(result, Recipe):
                high, best = middle, result
            else:
                low = middle + 1
        return best if len(best.stages) == low else self.build_recipe([unit] * low, users, 0)

    def _add(self, out: CandidateSet, recipe: Recipe, seen: set[tuple]) -> None:
        key = (tuple((s.unit.key, s.first_layer, s.last_layer_exclusive) for s in recipe.stages), recipe.users)
        if key in seen:
            return
        seen.add(key)
        out.recipes.append(Recipe(len(out.recipes), recipe.stages, recipe.users, recipe.speed, recipe.kv_capacity_tokens,
                                  recipe.devices_by_class, recipe.price_usd, recipe.max_users))

    def _mixed(self, out: CandidateSet, users: int, minimal: dict[int, int], seen: set[tuple], total_devices: int) -> None:
        """Pipelines over 2-3 unit types of different classes, with the smallest counts that fit.
        On large clusters only mixes that include a type unable to hold a replica alone are tried:
        there, mixing is how weaker devices contribute at all."""
        types = list(range(len(self.units)))
        weight_bytes = self.weights.total_bytes
        for size in range(2, min(MAX_TYPES_PER_RECIPE, len(types)) + 1):
            for combo in itertools.combinations(types, size):
                classes = [self.units[i].device_class.index for i in combo]
                if len(set(classes)) < size:
                    continue
                if total_devices > SMALL_CLUSTER_DEVICES and all(i in minimal for i in combo):
                    continue
                caps = []
                for i in combo:
                    unit = self.units[i]
                    enough = math.ceil(weight_bytes / max(unit.device_class.budget_bytes * unit.tp, 1.0)) + 1
                    caps.append(min(unit.available, minimal.get(i, enough)))
                counts_space = list(itertools.product(*[range(1, c + 1) for c in caps]))
                if len(counts_space) > MAX_COUNT_COMBINATIONS:
                    counts_space = counts_space[:MAX_COUNT_COMBINATIONS]
                fitted: list[tuple[int, ...]] = []
                for counts in counts_space:
                    if any(all(f[j] <= counts[j] for j in range(size)) for f in fitted):
                        continue  # a smaller layout already fits; more devices would only add hops
                    units = [self.units[i] for i, c in zip(combo, counts) for _ in range(c)]
                    result = self.build_recipe(units, users, len(out.recipes))
                    if isinstance(result, Recipe):
                        fitted.append(counts)
                        self._add(out, result, seen)


def _without_dominated(recipes: list[Recipe]) -> list[Recipe]:
    """Drop a recipe when another with the same users uses no more devices of any class, is at
    least as fast and no more expensive; renumber the rest in order."""
    keep: list[Recipe] = []
    by_users: dict[int, list[Recipe]] = {}
    for recipe in recipes:
        by_users.setdefault(recipe.users, []).append(recipe)
    dropped: set[int] = set()
    for group in by_users.values():
        for a in group:
            if a.index in dropped:
                continue
            used_a = dict(a.devices_by_class)
            for b in group:
                if b is a or b.index in dropped:
                    continue
                used_b = dict(b.devices_by_class)
                if (all(used_a.get(c, 0) <= used_b.get(c, 0) for c in set(used_a) | set(used_b))
                        and a.tokens_per_s >= b.tokens_per_s and (a.price_usd or 0) <= (b.price_usd or 0)
                        and (used_a, a.tokens_per_s) != (used_b, b.tokens_per_s)):
                    dropped.add(b.index)
    for recipe in recipes:
        if recipe.index not in dropped:
            keep.append(Recipe(len(keep), recipe.stages, recipe.users, recipe.speed, recipe.kv_capacity_tokens,
                               recipe.devices_by_class, recipe.price_usd, recipe.max_users))
    return keep


def build_candidates(model: ModelSpec, mix: PrecisionMix, request: ServeRequest, cluster: Cluster,
                     calibrations: dict[str, SpeedCalibration], topology: Topology | None = None,
                     coarse: bool = False) -> CandidateSet:
    """All recipes for serving `model` on `cluster` (coarse: fewer users-per-replica values)."""
    return RecipeBuilder(model, mix, request, cluster, calibrations, topology, coarse).build()
