"""`plan sweep`: a grid of users x context, each cell a verified plan, and the largest user count of
each context."""

from __future__ import annotations

import csv
import io
import json

import pytest

from planner.cli.main import main
from planner.commands.args import DeployArgs
from planner.commands.deploy import run_deploy
from planner.commands.sweep import (
    CSV_COLUMNS,
    SweepArgs,
    run_sweep,
    to_sweep_csv,
    to_sweep_text,
)
from tests.conftest import ROOT

HOMELAB = str(ROOT / "inventories" / "homelab.yaml")
MODEL = "llama-3.1-8b"


@pytest.fixture(scope="module")
def swept() -> tuple[dict, list[str]]:
    lines: list[str] = []
    args = SweepArgs(inventory=HOMELAB, model=MODEL, users_list="64,1,8", contexts="4096,32768")
    return run_sweep(args, progress=lines.append), lines


def _deploy(users: int, context: int, **extra):
    return run_deploy(DeployArgs(inventory=HOMELAB, model=MODEL, users=users, context=context, **extra))


def test_grid_order_axes_and_progress(swept) -> None:
    data, lines = swept
    assert data["axes"] == {"users": [1, 8, 64], "context": [4096, 32768], "weights": ["bf16"], "engine": ["vllm"]}
    assert [(r["context"], r["users"]) for r in data["rows"]] == [(c, u) for c in (4096, 32768) for u in (1, 8, 64)]
    for row in data["rows"]:
        assert {"users", "context", "weights", "engine", "fits", "per_user_tokens_per_s", "tokens_per_s", "max_users"} <= set(row)
    assert len(lines) == 6 and lines[0].startswith("sweep 1/6: 1 user at 4,096 tokens")


def test_cells_that_fit_match_a_direct_deploy(swept) -> None:
    data, _ = swept
    fitting = [r for r in data["rows"] if r["fits"]]
    assert [(r["users"], r["context"]) for r in fitting] == [(1, 4096), (8, 4096), (1, 32768)]
    for row in fitting:
        result = _deploy(row["users"], row["context"])
        assert result.exit_code == 0
        assert row["tokens_per_s"] == result.plan.performance.decode_tokens_per_s_total
        assert row["per_user_tokens_per_s"] == result.plan.performance.decode_tokens_per_s_per_user
        assert row["max_users"] == result.plan.capacity.max_users and row["reason"] is None


def test_a_cell_beyond_capacity_does_not_fit_and_says_why(swept) -> None:
    data, _ = swept
    row = next(r for r in data["rows"] if (r["users"], r["context"]) == (64, 4096))
    assert not row["fits"] and row["status"] == "infeasible" and row["per_user_tokens_per_s"] is None
    assert "needs 16.1 GB of weights plus 34.4 GB of bf16 KV cache for 64 user(s)" in row["reason"]
    assert row["why"] and all("\n" not in w for w in row["why"])


def test_largest_users_fits_and_one_more_does_not(swept) -> None:
    data, _ = swept
    largest = {e["context"]: e for e in data["largest_users"]}
    assert set(largest) == {4096, 32768}
    for context, entry in largest.items():
        grid_max = max(r["users"] for r in data["rows"] if r["context"] == context and r["fits"])
        assert entry["largest_users"] >= grid_max and entry["method"] == "capacity"
        at = _deploy(entry["largest_users"], context)
        assert at.exit_code == 0 and at.plan.capacity.max_users == entry["largest_users"] == entry["capacity_users"]
        assert entry["per_user_tokens_per_s"] == at.plan.performance.decode_tokens_per_s_per_user
    assert _deploy(largest[32768]["largest_users"] + 1, 32768).exit_code == 1


def test_text_grid_and_csv(swept) -> None:
    data, _ = swept
    text = to_sweep_text(data)
    assert "users \\ context" in text and "largest users" in text and " no" in text
    assert f"{data['largest_users'][0]['largest_users']:,} users fit" in text
    parsed = list(csv.DictReader(io.StringIO(to_sweep_csv(data))))
    assert len(parsed) == len(data["rows"]) == 6 and tuple(parsed[0]) == CSV_COLUMNS
    assert [p["fits"] for p in parsed] == ["true" if r["fits"] else "false" for r in data["rows"]]
    assert float(parsed[0]["tokens_per_s"]) == data["rows"][0]["tokens_per_s"] and parsed[2]["tokens_per_s"] == ""


def test_a_speed_target_is_met_by_bisection() -> None:
    # A short --time-limit only cuts the search for "smallest changes" of the counts that fail.
    data = run_sweep(SweepArgs(inventory=HOMELAB, model=MODEL, users_list=(1,), contexts=(32768,), min_tokens_per_s=62,
                               time_limit=2))
    entry = data["largest_users"][0]
    assert entry["method"] == "bisection" and entry["capacity_users"] > entry["largest_users"] >= 1
    assert entry["per_user_tokens_per_s"] >= 62
    assert f"{entry['largest_users'] + 1:,} do not" in entry["note"]


def test_an_engine_axis_reports_combinations_no_engine_runs(runner) -> None:
    result = runner.invoke(main, ["sweep", "--inventory", HOMELAB, "--model", MODEL, "--users", "1", "--context", "8192",
                                  "--weights", "q4_k_m", "--engine", "vllm,llama.cpp", "--format", "json"])
    assert result.exit_code == 0, result.output
    vllm, llama = json.loads(result.stdout)["rows"]
    assert (vllm["engine"], vllm["fits"], vllm["status"]) == ("vllm", False, "refused") and "gguf" in vllm["reason"]
    assert (llama["engine"], llama["fits"]) == ("llama.cpp", True)


def test_cli_exit_codes_and_byte_identical_output(runner) -> None:
    args = ["sweep", "--inventory", HOMELAB, "--model", MODEL, "--users", "1,4", "--context", "32768"]
    first, second = runner.invoke(main, [*args, "--format", "json"]), runner.invoke(main, [*args, "--format", "json"])
    assert first.exit_code == 0 and first.stdout == second.stdout and len(json.loads(first.stdout)["rows"]) == 2
    lines = runner.invoke(main, [*args, "--format", "csv"])
    assert lines.exit_code == 0 and lines.stdout.count("\n") == 3
    table = runner.invoke(main, args)
    assert table.exit_code == 0 and "largest users" in table.stdout
    none = runner.invoke(main, ["sweep", "--gpus", "rtx-3060-12gb", "--model", MODEL, "--users", "1", "--context", "4096"])
    assert none.exit_code == 1 and "not even 1 user fits" in none.stdout


@pytest.mark.parametrize(("args", "text"), [
    (["--users", "0", "--context", "4096"], "--users: expected user counts from 1"),
    (["--users", "a,b", "--context", "4096"], "--users: expected user counts"),
    (["--users", "1,,8", "--context", "4096"], "--users: expected user counts"),
    (["--users", "1", "--context", "4096,-1"], "--context: expected context lengths"),
    (["--users", "1,2,3,4,5,6,7,8,9", "--context", "1,2,3,4,5,6,7,8"], "72 cells"),
    (["--users", "1,2,3,4,5", "--context", "1,2,3,4", "--weights", "bf16,fp8,int4,int8"], "80 cells"),
    (["--context", "4096"], "--users"),
    (["--users", "1", "--context", "4096", "--format", "xml"], "--format"),
])
def test_bad_lists_exit_2_on_one_line(runner, args: list[str], text: str) -> None:
    result = runner.invoke(main, ["sweep", "--inventory", HOMELAB, "--model", MODEL, *args])
    assert result.exit_code == 2 and text in result.output and result.output.count("\n") == 1
    assert "Traceback" not in result.output
