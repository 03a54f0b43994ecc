"""How close `plan deploy --engine vllm` comes to the KV cache real vLLM start-ups allocated.

Replays every case of tests/data/vllm_startup_cases.yaml (tests/vllm_replay.py) and prints one
row per start-up: the cache size vLLM printed ("GPU KV cache size: N tokens") and the plan's
capacity.kv_cache_tokens, the available KV memory of the first worker, and the weights vLLM
reported loading beside the planner's; then the median and the share within 15% over the scored
logs. Run: python tests/benchmarks/vllm_kv_accuracy.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.vllm_replay import replay_all, summary


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:+.1f}%"


def main() -> None:
    replays = replay_all()
    print(f"{'log':>3} {'model':<16} {'GPU':<14} {'tp':>2} {'pp':>2} {'vLLM':<9} {'logged tokens':>13} {'planned':>10} "
          f"{'error':>7} {'avail GiB':>9} {'planned':>7} {'error':>7} {'weights':>7} {'planned':>7} scored")
    for r in replays:
        print(f"{r.log:>3} {r.model:<16} {r.gpu:<14} {r.tp:>2} {r.pp:>2} {r.version[:9]:<9} "
              f"{r.logged_tokens or 0:>13,} {r.predicted_tokens:>10,} {_pct(r.token_error):>7} "
              f"{r.logged_available_gib or 0:>9.2f} {r.predicted_available_gib:>7.2f} {_pct(r.available_error):>7} "
              f"{r.logged_weights_gib or 0:>7.2f} {r.predicted_weights_gib:>7.2f} {'yes' if r.scored else 'no'}")
    result = summary(replays)
    print(f"\n{result['logs']} scored start-ups: median |error| {result['median'] * 100:.1f}%, "
          f"{result['within_15'] * 100:.0f}% within 15%")


if __name__ == "__main__":
    main()
