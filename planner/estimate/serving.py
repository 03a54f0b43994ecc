"""Sustained serving speed of one replica: prompts arrive while everyone else decodes.

In steady state a replica with U users in flight finishes a request every (TTFT + D x TPOT) / U
seconds (Little's law; D = output tokens after the first), and each finished request was paid
for by one prefill of its P prompt tokens. Per step the replica therefore carries U_d decode
tokens (the users past their first token) and, on average, U_d x P / D prompt tokens:
- engines with chunked prefill (vLLM) put those prompt tokens into the decode step, up to the
  step's token budget, so a prompt rides under memory-bound decode almost for free until compute
  binds (estimate/speed.py takes the larger of memory and compute time);
- engines whose prefill runs as its own forward pass (SGLang by default, MLX, exo) stop decoding
  while it runs.
Time to first token is the engine's fixed cost per request (API server, tokenizer, scheduler),
half a running step (a request arrives mid-step), queueing for the step budget (an M/D/1 wait at
the budget's utilisation, never more than every other user's prompt ahead) and the prompt's own
prefill at that load.
The fixed point between decoding users, step time and time to first token is found by damped
iteration. A replica thus never claims more tokens than its devices process by its own times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.estimate.performance import StagePlan, estimate_prefill_s, estimate_replica_step
from planner.estimate.seed import classify_decode_speed
from planner.estimate.speed import StepLoad
from planner.estimate.weights import WeightEstimate
from planner.schemas.engine import EngineSpeed
from planner.schemas.model import ModelSpec
from planner.schemas.precision import PrecisionMix

ITERATIONS = 40
TOLERANCE = 1e-4  # relative change of the decoding users at which the iteration stops
PREFILL_COMPETITION = 0.5  # prompts take over half of the step time: the bottleneck is prefill


@dataclass(frozen=True)
class Workload:
    """What one replica serves."""

    users: int  # requests in flight
    prompt_tokens: int
    output_tokens: int
    batch_tokens: int  # tokens one forward pass may carry (max_num_batched_tokens, chunked_prefill_size, ubatch)

    @property
    def decode_steps(self) -> int:
        """Output tokens after the first (which the prefill's last pass produces)."""
        return max(1, self.output_tokens - 1)

    @property
    def decode_context(self) -> int:
        """Tokens a decoding request holds on average."""
        return self.prompt_tokens + self.output_tokens // 2


@dataclass(frozen=True)
class ReplicaSpeed:
    """Sustained speed of one replica under its workload."""

    decode_step_s: float  # time between two output tokens of one user, prompts of others included (TPOT)
    decode_tokens_per_s_per_user: float
    decode_tokens_per_s: float  # output tokens per second, all users
    time_to_first_token_s: float  # queueing plus the prompt's prefill at this load
    requests_per_s: float
    queue_s: float
    prefill_s: float  # one prompt's prefill at this load, without queueing
    prefill_alone_s: float  # one prompt's prefill on an idle replica
    prefill_share: float  # share of the step time spent on prompts
    decode_only_step_s: float  # the step with every user decoding and no prompt (the ceiling)
    decoding_users: float  # users past their first token, on average
    bottleneck_stage: int
    bottleneck: str  # memory bandwidth | compute | link | prefill competition
    stage_seconds: tuple[float, ...]
    tier: str


def estimate_replica_speed(
    model: ModelSpec,
    mix: PrecisionMix,
    weights: WeightEstimate,
    stages: list[StagePlan],
    *,
    workload: Workload,
    scheduling: EngineSpeed,
) -> ReplicaSpeed:
    """Per-user and total decode speed, time to first token and the bottleneck of one replica."""
    users, prompt, steps = workload.users, workload.prompt_tokens, workload.decode_steps
    context = workload.decode_context
    overlap, mixed = scheduling.pipeline_overlap, scheduling.chunked_prefill
    budget_total = max(1, workload.batch_tokens)

    def step(decode: float, prefill: float = 0.0):
        return estimate_replica_step(model, mix, weights, stages, StepLoad(decode, context, prefill, prompt // 2),
                                     overlap=overlap)

    fixed = stages[0].calibration.request_overhead_s
    ceiling = step(users)
    alone = estimate_prefill_s(model, mix, weights, stages, prompt, budget_total, pipelined=scheduling.prefill_pipelined)
    decoding = float(users)
    state = None
    for _ in range(ITERATIONS):
        budget = max(1, budget_total - math.ceil(decoding)) if mixed else budget_total
        t_decode = step(decoding).period_s
        demand = decoding * prompt / steps  # prompt tokens per step, on average
        carry = min(budget, max(min(prompt, budget), demand))  # prompt tokens in a step that carries some
        if mixed:
            t_carry = step(decoding, carry).period_s
        else:
            t_carry = t_decode + estimate_replica_step(model, mix, weights, stages, StepLoad(0, context, carry, prompt // 2),
                                                       overlap=False).period_s
        share = min(1.0, demand / carry)
        t = t_decode + share * (t_carry - t_decode)
        rate = decoding / (steps * t)
        service = math.ceil(prompt / budget) * t_carry
        utilisation = rate * prompt * t_carry / budget
        queue = (utilisation / (2 * (1 - utilisation)) * service) if utilisation < 1 else math.inf
        queue = min(queue, (users - 1) * prompt * t_carry / budget)
        ttft = fixed + 0.5 * t + queue + service  # a new request waits on average half a running step
        state = (t, t_decode, rate, ttft, queue, service, share * (t_carry - t_decode) / t)
        target = users * steps * t / (steps * t + ttft)
        if abs(target - decoding) <= TOLERANCE * users:
            decoding = target
            break
        decoding = 0.5 * (decoding + target)
    t, t_decode, rate, ttft, queue, service, prefill_share = state
    decode_step = step(decoding)
    rate = decoding / (steps * t)
    bottleneck = "prefill competition" if prefill_share > PREFILL_COMPETITION else decode_step.bound
    per_user = 1.0 / t
    return ReplicaSpeed(
        decode_step_s=t,
        decode_tokens_per_s_per_user=per_user,
        decode_tokens_per_s=rate * workload.output_tokens,
        time_to_first_token_s=ttft,
        requests_per_s=rate,
        queue_s=queue,
        prefill_s=service,
        prefill_alone_s=alone,
        prefill_share=prefill_share,
        decode_only_step_s=ceiling.period_s,
        decoding_users=decoding,
        bottleneck_stage=decode_step.bottleneck_stage,
        bottleneck=bottleneck,
        stage_seconds=tuple(s.total_s for s in decode_step.stages),
        tier=classify_decode_speed(per_user),
    )
