"""Long work reports its steps to a progress writer (the CLI passes one only when stderr is a terminal)."""

from __future__ import annotations

from pathlib import Path

from planner.cli import main
from planner.commands.args import DeployArgs
from planner.commands.buy import run_buy
from planner.commands.deploy import run_deploy
from planner.commands.whatif import WhatifArgs

ROOT = Path(__file__).resolve().parent.parent


def test_deploy_reports_layouts_solver_bound_and_checks() -> None:
    lines: list[str] = []
    args = DeployArgs(model="llama-3.1-70b", inventory=str(ROOT / "inventories" / "dgx-h100.yaml"), users=32)
    assert run_deploy(args, progress=lines.append).exit_code == 0
    assert any("layouts kept" in line for line in lines)
    solver = [line for line in lines if line.startswith("solver: total_tokens_per_s")]
    assert solver and "bound" in solver[0] and "optimal" in solver[0]
    assert lines[-1] == "verifying the plan"


def test_purchase_search_reports_each_template() -> None:
    lines: list[str] = []
    market = str(ROOT / "tests" / "data" / "market-small.yaml")
    args = WhatifArgs(model="llama-3.1-8b", users=2, context=8192, market=market)
    run_buy(args, progress=lines.append)
    assert any(line.startswith("[1/") for line in lines) and any(line.startswith("joint model") for line in lines)
    assert any(line.startswith("verifying the cheapest") for line in lines)


def test_quiet_when_stderr_is_not_a_terminal(runner) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "homelab.yaml"),
                                  "--model", "llama-3.1-8b"])
    assert result.exit_code == 0 and "... " not in result.output
