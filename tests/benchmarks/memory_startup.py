"""Wall time of `plan memory` as a user runs it (a fresh process each time). Prints a table.

Run: python tests/benchmarks/memory_startup.py [repeats]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = [
    ["memory", "--model", "llama-3.1-8b"],
    ["memory", "--model", "deepseek-v3", "--weights", "fp8_block128", "-tp", "8", "--format", "json"],
    ["memory", "--model", "llama-3.1-405b", "--weights", "q4_k_m", "--users", "16", "--context", "32768"],
    ["memory", "--params", "70B", "--weights", "int4"],
    ["models", "list"],
]


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    plan = shutil.which("plan")
    base = [plan] if plan else [sys.executable, "-m", "planner.cli"]
    print(f"{'command':<75} {'min s':>7} {'median s':>9} {'max s':>7}")
    for args in COMMANDS:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(base + args, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        label = "plan " + " ".join(args)
        print(f"{label:<75} {min(times):7.3f} {statistics.median(times):9.3f} {max(times):7.3f}")


if __name__ == "__main__":
    main()
