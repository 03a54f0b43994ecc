"""The seam between the planner and a serving engine's own memory accounting.

Every engine sizes memory its own way: vLLM takes a share of what CUDA reports and fills what
its profile run leaves with KV blocks; SGLang takes a static fraction for weights and its token
pool; llama.cpp allocates its buffers and the context it is given; MLX wires what macOS lets it.
An EngineMemory answers, for one launch on one device type:

- `settings`: what the launch runs with there (memory share, batch tokens, sequences, block size);
- `capacity_bytes`: what the engine's allocator may fill on a device;
- `activation_bytes` and `overhead_bytes`: the parts of a stage that are neither weights nor cache;
- `kv_layout`: how the cache is laid out, hence its bytes for users at a context and the capacity
  the engine reports in its own terms (`capacity`).

The StageSizer (estimate/stage.py) adds weights and asks these; the candidates, `plan memory` and
the plan document all read the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from planner.estimate.attention import LayerAttention
from planner.schemas.inventory import Device
from planner.schemas.model import ModelSpec
from planner.schemas.serving import ServeRequest


@dataclass(frozen=True)
class EngineSettings:
    """What one launch runs with on one device type (the engine's flags the plan depends on)."""

    memory_fraction: float | None  # vLLM gpu_memory_utilization, SGLang mem_fraction_static; None: not a share
    batch_tokens: int  # tokens in one forward pass: max_num_batched_tokens, chunked_prefill_size, ubatch
    max_sequences: int  # the engine's default concurrency cap (max_num_seqs, slots); raised to the users served
    block_size: int  # KV-cache page in tokens
    cuda_graphs: bool = True  # captured decode graphs (vLLM without --enforce-eager)
    kv_cache_memory_bytes: int | None = None  # an explicit KV budget per device (vLLM --kv-cache-memory-bytes)
    mxfp4_expert_factor: float = 1.0  # MXFP4 expert matrices grow by this when the kernels pad them (vLLM)
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # Settings key the stage sizer's caches on the hot path: hash once.
        object.__setattr__(self, "_hash", hash((self.memory_fraction, self.batch_tokens, self.max_sequences, self.block_size,
                                                self.cuda_graphs, self.kv_cache_memory_bytes, self.mxfp4_expert_factor,
                                                self.notes)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def sequences(self, users: int) -> int:
        """The concurrency cap a launch for `users` users needs."""
        return max(self.max_sequences, users)


@dataclass(frozen=True)
class KVCapacity:
    """A replica's cache in the engine's own terms."""

    kv_cache_tokens: int  # what the engine reports as its cache size in tokens
    max_concurrency: float  # requests of the full context the cache holds at once
    max_users: int  # whole users at the requested context
    longest_sequence_tokens: int  # the longest single request the cache holds (capped at the model's maximum)


class KVLayout:
    """How a cache is laid out over a model's layers on one tensor-parallel rank, for one context.

    A layout is a list of groups; each group is a set of layers that share one block table. A
    request of x tokens holds x tokens in a group, or at most the group's cap (a sliding window or
    attention chunk, plus the tokens in flight), with one more block where the window need not
    start on a block boundary. Two ways to pay for a request:

    - pooled (vLLM): every block id reserves one page in every group, so a request costs
      (its blocks summed over groups) x (the largest group's bytes per block);
    - exact: every layer pays for the tokens it holds, and nothing more.
    """

    def __init__(self, attention: tuple[LayerAttention, ...], groups: list[list[int]], caps: list[int | None],
                 extra_block: list[bool], *, context: int, block_size: int, pooled: bool) -> None:
        self.attention, self.groups, self.caps, self.extra_block = attention, groups, caps, extra_block
        self.context, self.block_size, self.pooled = context, block_size, pooled
        n = len(attention)
        self._prefix: list[list[float]] = []  # per group: prefix sums over layers of the bytes one block holds
        for group in groups:
            members = set(group)
            running, prefix = 0.0, [0.0]
            for i in range(n):
                if i in members:
                    running += attention[i].bytes_per_token * block_size
                prefix.append(running)
            self._prefix.append(prefix)
        self.held = [self.held_tokens(g, context) for g in range(len(groups))]
        self.blocks_per_request = self.request_blocks(context)

    def held_tokens(self, group: int, tokens: int) -> int:
        """Tokens a request of `tokens` tokens holds in `group`."""
        cap = self.caps[group]
        held = tokens if cap is None else min(cap, tokens)
        return held + (self.block_size if self.extra_block[group] else 0)

    def request_blocks(self, tokens: int) -> int:
        """Blocks one request of `tokens` tokens takes, summed over the groups."""
        return sum(math.ceil(self.held_tokens(g, tokens) / self.block_size) for g in range(len(self.groups)))

    def group_token_bytes(self, group: int, start: int, stop: int) -> float:
        """Bytes one token adds to `group` over layers [start, stop)."""
        prefix = self._prefix[group]
        return (prefix[stop] - prefix[start]) / self.block_size

    def block_bytes(self, start: int, stop: int) -> float:
        """Bytes of one block id over layers [start, stop): the largest group's share (pooled),
        every group's (exact)."""
        shares = [p[stop] - p[start] for p in self._prefix]
        return max(shares, default=0.0) if self.pooled else sum(shares)

    def request_bytes(self, start: int, stop: int) -> float:
        """Bytes one request at the context needs over layers [start, stop)."""
        if self.pooled:
            return self.blocks_per_request * self.block_bytes(start, stop)
        return sum((p[stop] - p[start]) / self.block_size * h for p, h in zip(self._prefix, self.held))

    def sequence_bytes(self, start: int, stop: int, tokens: int) -> float:
        """Bytes one sequence of `tokens` tokens holds over layers [start, stop)."""
        if self.pooled:
            return self.request_blocks(tokens) * self.block_bytes(start, stop)
        return sum((p[stop] - p[start]) / self.block_size * self.held_tokens(g, tokens) for g, p in enumerate(self._prefix))

    def blocks(self, free_bytes: float, start: int, stop: int) -> int:
        """Whole block ids `free_bytes` holds over layers [start, stop)."""
        per_block = self.block_bytes(start, stop)
        if per_block <= 0 or free_bytes <= 0:
            return 0
        return int(free_bytes // per_block)


class EngineMemory(Protocol):
    """One engine's memory accounting (see the module docstring)."""

    id: str
    version: str

    def settings(self, device: Device | None, request: ServeRequest, *, model: ModelSpec | None = None, tp: int = 1,
                 pp: int = 1) -> EngineSettings: ...

    def capacity_bytes(self, device: Device, settings: EngineSettings) -> float: ...

    def activation_bytes(self, model: ModelSpec, peak_elements: float, *, last: bool, users: int, context: int,
                         settings: EngineSettings) -> float: ...

    def overhead_bytes(self, model: ModelSpec, *, layers: int, tp: int, settings: EngineSettings,
                       reserve_bytes: int | None) -> float: ...

    def kv_layout(self, model: ModelSpec, attention: tuple[LayerAttention, ...], *, context: int,
                  settings: EngineSettings, pipeline_stages: int) -> KVLayout: ...

    def kv_bytes(self, layout: KVLayout, start: int, stop: int, users: int, settings: EngineSettings) -> float: ...

    def capacity(self, model: ModelSpec, layout: KVLayout, stages: list[tuple[range, float]], *, context: int,
                 users: int, settings: EngineSettings) -> KVCapacity: ...


def exact_layout(attention: tuple[LayerAttention, ...], context: int, block_size: int = 1) -> KVLayout:
    """Layers grouped by their window (none for full attention), each paying for the tokens it
    holds: for engines that allocate per token, not per shared block."""
    by_cap: dict[int | None, list[int]] = {}
    for i, layer in enumerate(attention):
        by_cap.setdefault(layer.window, []).append(i)
    caps = list(by_cap)
    return KVLayout(attention, [by_cap[c] for c in caps], caps, [False] * len(caps), context=context,
                    block_size=block_size, pooled=False)


def longest_fitting(cost: Callable[[int], float], budget: float, low: int, high: int) -> int:
    """The largest x in [low, high] with cost(x) <= budget (cost non-decreasing), or low - 1."""
    if cost(low) > budget:
        return low - 1
    while low < high:
        middle = (low + high + 1) // 2
        if cost(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low
