"""Benchmark: `plan whatif` buying from scratch over the whole built-in market (every template and
priced machine), for a few workloads and cost bases. Prints a table: how many templates were
priced and searched, the wall time, the cheapest answer and whether it is proven cheapest.

    python tests/benchmarks/whatif_market.py [--time-limit 60]

Not collected as a test; results go to docs/benchmarks.md."""

from __future__ import annotations

import argparse
import datetime
import time

from planner.commands.buy import run_buy
from planner.commands.whatif import WhatifArgs

CASES = [
    ("llama-3.1-8b, 32 users, 30 tok/s", dict(model="llama-3.1-8b", users=32, context=8192, min_tokens_per_s=30.0), "purchase"),
    ("llama-3.1-70b fp8, 64 users, 20 tok/s", dict(model="llama-3.1-70b", users=64, context=8192, min_tokens_per_s=20.0,
                                                   weights="fp8"), "purchase"),
    ("llama-3.1-70b fp8, 64 users, 20 tok/s", dict(model="llama-3.1-70b", users=64, context=8192, min_tokens_per_s=20.0,
                                                   weights="fp8"), "hourly"),
    ("llama-3.1-70b fp8+q4_k_m, 64 users, 20 tok/s", dict(model="llama-3.1-70b", users=64, context=8192, min_tokens_per_s=20.0,
                                                          weights="fp8,q4_k_m"), "tco"),
    ("qwen3-235b-a22b fp8, 16 users, 20 tok/s", dict(model="qwen3-235b-a22b", users=16, context=8192, min_tokens_per_s=20.0,
                                                     weights="fp8"), "purchase"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-limit", type=float, default=60.0)
    options = parser.parse_args()
    print(f"| workload | cost | templates (priced / searched) | seconds | cheapest | cost | proof |")
    print("|---|---|---|---:|---|---:|---|")
    for label, fields, basis in CASES:
        extra = {"cost": basis, "time_limit": options.time_limit}
        if basis == "tco":
            extra.update(usd_per_kwh=0.15, years=3.0, utilization=0.6)
        args = WhatifArgs(**fields, **extra, explicit=frozenset(fields))
        start = time.perf_counter()
        data, _ = run_buy(args, today=datetime.date(2026, 12, 1))
        seconds = time.perf_counter() - start
        best = data["configurations"][0] if data["configurations"] else None
        market = data["market"]
        priced = market["options"] - sum(1 for e in data["excluded"] if e["reason"] in (
            "rented, not bought", "not rented by the hour") or e["reason"].startswith("no purchase price"))
        print(f"| {label} | {basis} | {market['options']} ({priced} / {market['searched']}) | {seconds:.1f} | "
              f"{best['configuration'] + ' ' + best['weights'] if best else '-'} | "
              f"{best['cost']:,.2f} | {data['proof']['status']} |" if best else
              f"| {label} | {basis} | {market['options']} | {seconds:.1f} | none | - | {data['proof']['status']} |")


if __name__ == "__main__":
    main()
