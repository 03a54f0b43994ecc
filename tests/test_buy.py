"""plan whatif without machines: the cheapest machines of a market for a request, each a verified plan."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from planner.cli import main
from planner.commands.buy import mark_pareto_front, run_buy
from planner.commands.deploy import run_deploy
from planner.commands.whatif import WhatifArgs
from planner.errors import InputError
from planner.loaders.market import load_market_catalog, load_market_file
from planner.loaders.shorthand import build_shorthand_cluster

DATA = Path(__file__).parent / "data"
MARKET = str(DATA / "market-small.yaml")
TODAY = datetime.date(2026, 12, 1)


def buy(**fields):
    base = dict(model="llama-3.1-8b", context=8192, min_tokens_per_s=20.0, market=MARKET, time_limit=60.0)
    base.update(fields)
    return run_buy(WhatifArgs(**base, explicit=frozenset(base)), today=TODAY)


def test_cheapest_is_no_dearer_than_any_machine_count_of_any_template():
    """Brute force: every template alone at 1-4 machines, each a deploy; the answer is the cheapest."""
    data, code = buy(users=12, max_machines=4)
    assert code == 0
    best = data["configurations"][0]
    assert best["verified"] and data["proof"]["status"] == "proven cheapest"
    prices = {t.id: t.price.usd for t in load_market_file(MARKET) if t.price}
    devices = {t.id: t.devices for t in load_market_file(MARKET)}
    found = []
    for template, price in prices.items():
        for machines in range(1, 5):
            cluster = build_shorthand_cluster(nodes=f"{machines}x({devices[template]})")
            args = WhatifArgs(model="llama-3.1-8b", users=12, context=8192, min_tokens_per_s=20.0, nodes="x", time_limit=20.0)
            if run_deploy(args, cluster=cluster).exit_code == 0:
                found.append((price * machines, template, machines))
                break
    cheapest = min(found)
    assert best["cost"] == pytest.approx(cheapest[0])
    assert best["configuration"] == f"{cheapest[2]} of {cheapest[1]}"  # 1 of pair-3090 at 2,998


def test_a_mix_of_templates_when_no_template_alone_suffices():
    """Seven users at 8,192 tokens: one RTX 3090 or one RTX 4090 holds five, so with one machine of
    each allowed only the mix of both serves them (the joint CP-SAT model)."""
    data, code = buy(users=7, max_machines=1, templates=("single-*",))
    assert code == 0
    best = data["configurations"][0]
    assert sorted(t["id"] for t in best["templates"]) == ["single-3090", "single-4090"]
    assert best["cost"] == pytest.approx(1499 + 1599)
    assert best["verified"] and best["plan"]["inventory"]["devices"] == 2
    assert data["proof"]["status"] == "proven cheapest"
    assert not {e["template"] for e in data["excluded"]} & {"single-3090", "single-4090"}  # both are in the answer


def test_unpriced_and_rented_templates_are_left_out_with_a_reason():
    data, _ = buy(users=2)
    reasons = {e["template"]: e["reason"] for e in data["excluded"]}
    assert reasons["a10-box"].startswith("no purchase price")
    assert reasons["g6e-xlarge"] == "rented, not bought"
    assert all(r["cost"] > 0 for r in data["configurations"])


def test_hourly_cost_takes_only_rented_machines():
    data, code = buy(users=2, cost="hourly")
    assert code == 0
    assert data["configurations"][0]["configuration"] == "1 of g6e-xlarge"
    assert data["configurations"][0]["cost"] == pytest.approx(1.861)
    assert data["cost"]["unit"] == "USD per hour"
    reasons = {e["template"]: e["reason"] for e in data["excluded"]}
    assert reasons["single-3090"] == "not rented by the hour"


def test_total_cost_of_ownership_adds_power_over_the_years():
    data, code = buy(users=2, cost="tco", years=3.0, usd_per_kwh=0.2, utilization=0.5, templates=("single-3090",))
    assert code == 0
    row = data["configurations"][0]
    power = 350 * 0.5 * 8760 * 3 / 1000 * 0.2  # the RTX 3090's 350 W board power, half the time, 3 years at 0.2 USD/kWh
    assert row["cost"] == pytest.approx(1499 + power, abs=0.01)
    assert any("power 350 W" in part for part in row["templates"][0]["cost_parts"])


def test_total_cost_rents_cloud_machines_every_hour():
    data, _ = buy(users=2, cost="tco", years=1.0, usd_per_kwh=0.2, templates=("g6e-xlarge",))
    assert data["configurations"][0]["cost"] == pytest.approx(1.861 * 8760)


def test_tco_needs_an_electricity_price():
    with pytest.raises(InputError, match="usd-per-kwh"):
        buy(users=2, cost="tco")


def test_request_rate_needs_a_per_user_speed():
    with pytest.raises(InputError, match="min-tokens-per-s"):
        buy(request_rate=1.0, min_tokens_per_s=None)


def test_request_rate_plans_the_requests_in_flight():
    data, code = buy(request_rate=0.01, output_tokens=1000, prompt_tokens=1000, max_ttft=10.0)
    # Little's law: 0.01 requests/s x (10 s + 1,000 tokens / 20 tokens/s) = 0.6, so one in flight
    assert data["users"] == 1 and code == 0


def test_the_same_question_gives_the_same_answer():
    a, _ = buy(users=6)
    b, _ = buy(users=6)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_pareto_front_keeps_only_undominated_rows():
    rows = [{"cost": 1.0, "tokens_per_s": 10.0, "tokens_per_s_per_user": 5.0},
            {"cost": 2.0, "tokens_per_s": 20.0, "tokens_per_s_per_user": 5.0},
            {"cost": 2.0, "tokens_per_s": 15.0, "tokens_per_s_per_user": 4.0},
            {"cost": 3.0, "tokens_per_s": None, "tokens_per_s_per_user": None}]
    mark_pareto_front(rows)
    assert [r["on_front"] for r in rows] == [True, True, False, False]


def test_built_in_market_has_servers_macs_and_cloud_each_priced():
    templates = load_market_catalog()
    kinds = {t.kind for t in templates}
    assert {"server", "workstation", "desktop", "cloud"} <= kinds
    assert any(t.id.startswith("m3-ultra") for t in templates) and any(t.id == "dgx-spark-gb10" for t in templates)
    for t in templates:
        if t.kind == "cloud":
            assert t.hourly is not None and t.hourly.source
        if t.kind == "server":
            assert t.price is not None and t.power_w is not None
    assert not any(t.id.endswith("mi300x") for t in templates if t.kind == "workstation")  # an OAM module, not a PCIe card


def test_cli_buy_and_its_errors(runner, tmp_path):
    result = runner.invoke(main, ["whatif", "--model", "llama-3.1-8b", "--users", "2", "--context", "8192",
                                  "--market", MARKET, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["configurations"][0]["verified"]
    bad = tmp_path / "market.yaml"
    bad.write_text("templates:\n  - id: x\n    name: x\n    kind: desktop\n    devices: 1xrtx-4900\n")
    result = runner.invoke(main, ["whatif", "--model", "llama-3.1-8b", "--market", str(bad)])
    assert result.exit_code == 2 and "market.yaml:5" in result.output and "templates.0.devices" in result.output
    assert "rtx-4090" in result.output  # the suggestion
    assert len(result.output.strip().splitlines()) <= 2
    result = runner.invoke(main, ["whatif", "--model", "llama-3.1-8b", "--template", "hgx-h1000"])
    assert result.exit_code == 2 and "hgx-h100" in result.output
    result = runner.invoke(main, ["whatif", "--model", "llama-3.1-8b", "--inventory", "inventories/homelab.yaml",
                                  "--market", MARKET])
    assert result.exit_code == 2 and "buying from scratch" in result.output
    result = runner.invoke(main, ["whatif", "--list-templates", "--template", "dgx-*"])
    assert result.exit_code == 0 and "dgx-h100" in result.output and "270,000" in result.output


def test_no_configuration_exits_1(runner):
    result = runner.invoke(main, ["whatif", "--model", "llama-3.1-70b", "--users", "64", "--min-tokens-per-s", "200",
                                  "--market", MARKET, "--max-machines", "2"])
    assert result.exit_code == 1
    assert "No configuration" in result.output


def test_exclude_patterns_and_typos(runner):
    from planner.commands.buy_search import select_templates

    templates = load_market_file(MARKET)
    assert [t.id for t in select_templates(templates, ("!*3090",))] == ["single-4090", "a10-box", "g6e-xlarge"]
    assert [t.id for t in select_templates(templates, ("single-*,!single-4090",))] == ["single-3090"]
    result = runner.invoke(main, ["whatif", "--model", "llama-3.1-8b", "--market", MARKET, "--weights", "bf16,nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.output
    result = runner.invoke(main, ["sweep", "--inventory", "inventories/homelab.yaml", "--model", "llama-3.1-8b", "--users", "1",
                                  "--context", "4096", "--engine", "vllm,nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.output


def test_the_whole_market_answers_with_each_kind_of_machine():
    data, code = run_buy(WhatifArgs(model="llama-3.1-8b", users=8, context=8192, min_tokens_per_s=20.0,
                                    explicit=frozenset({"model", "users", "context", "min_tokens_per_s"})), today=TODAY)
    assert code == 0 and data["proof"]["status"] == "proven cheapest"
    kinds = {t["kind"] for r in data["configurations"] for t in r["templates"]}
    assert {"workstation", "server", "desktop"} <= kinds  # a PCIe box, a server and a Mac, each its kind's cheapest found
    assert data["configurations"][0]["cost"] == min(r["cost"] for r in data["configurations"] if r["verified"])


def test_a_request_rate_buys_no_more_than_the_rate_needs():
    data, code = buy(request_rate=0.5, min_tokens_per_s=30.0, context=4096, market=None, templates=("2x-rtx-3090",))
    assert code == 0
    best = data["configurations"][0]
    assert best["configuration"] == "1 of 2x-rtx-3090"  # plan deploy's own rate search: one machine sustains 0.5/s
    assert best["plan"]["performance"]["requests_per_s"] >= 0.5


def test_market_prices_must_be_real_dates_and_kinds_must_match(runner, tmp_path):
    bad = tmp_path / "market.yaml"
    for text, expected in [
        ('    price: {usd: 10, date: "2026-13", source: "test"}\n', "month must be in 1..12"),
        ('    price: {usd: 10, date: "2099-01", source: "test"}\n', "in the future"),
        ('    hourly: {usd_per_hour: 1, provider: x, instance: y, date: "2025", source: "test"}\n', "kind: cloud"),
    ]:
        bad.write_text("templates:\n  - id: x\n    name: x\n    kind: desktop\n    devices: 1xrtx-4090\n" + text)
        result = runner.invoke(main, ["whatif", "--model", "llama-3.1-8b", "--market", str(bad)])
        assert result.exit_code == 2 and expected in result.output and "market.yaml" in result.output, result.output


def test_replacing_the_only_machine_by_removing_and_adding(runner):
    result = runner.invoke(main, ["whatif", "--inventory", "inventories/homelab.yaml", "--model", "llama-3.1-8b", "--users", "8",
                                  "--remove", "gpu-box", "--add", "2xrtx-4090", "--format", "json"])
    assert result.exit_code == 0, result.output
    changed = json.loads(result.output)["scenarios"][1]
    assert changed["machines"] == 1 and changed["devices"] == 2 and changed["fits"]


def test_macs_with_thunderbolt_5_are_bought_as_a_tensor_parallel_mesh():
    data, code = buy(users=1, model="llama-3.1-70b", weights="mlx-4bit", market=None, templates=("m3-ultra-60c-96gb",))
    assert code == 0
    best = data["configurations"][0]
    assert best["configuration"] == "4 of m3-ultra-60c-96gb" and best["verified"]
    (stage,) = best["plan"]["replicas"][0]["stages"]
    assert stage["tensor_parallel_size"] == 4 and len({d["node"] for d in stage["devices"]}) == 4
    assert best["tokens_per_s_per_user"] >= 20


def test_review_cases_a_count_between_doublings_and_a_mix_beyond_the_alone_bound(tmp_path):
    market = tmp_path / "market.yaml"
    market.write_text('templates:\n'
                      '- {id: a, name: A, kind: workstation, devices: 1xrtx-3090, price: {usd: 1499, date: "2024-01", source: "test price"}}\n'
                      '- {id: b, name: B, kind: workstation, devices: 1xrtx-a5000, price: {usd: 500, date: "2024-01", source: "test price"}}\n')
    data, _ = buy(market=str(market), users=20, context=2048, min_tokens_per_s=40.0, weights="bf16")
    # 2 of a fail, 4 of a cost 5,996 against 10 of b at 5,000; 3 of a (4,497) lies between the doublings.
    assert data["configurations"][0]["configuration"] == "3 of a" and data["configurations"][0]["verified"]
    # Ten users need two machines' worth of cache; with one of each allowed, only the mix serves them.
    data, code = buy(users=10, max_machines=1, templates=("single-*",))
    assert code == 0 and data["configurations"][0]["configuration"] == "1 of single-3090 + 1 of single-4090"
    assert data["configurations"][0]["verified"]


def test_a_format_listed_twice_is_planned_once():
    data, code = buy(users=8, max_machines=2, weights="bf16,bf16", templates=("single-3090",))
    assert code == 0 and data["configurations"] and data["configurations"][0]["cost"] > 0


def test_several_engines_compared_on_the_same_machines(runner):
    data, code = buy(users=4, engine="vllm,llama.cpp", templates=("single-3090",))
    assert code == 0
    engines = {r["engine"] for r in data["configurations"]}
    assert engines == {"vllm", "llama.cpp"} and all(r["verified"] for r in data["configurations"])
    for r in data["configurations"]:
        assert r["plan"]["request"]["engine"]["id"] == r["engine"]
    result = runner.invoke(main, ["whatif", "--model", "llama-3.1-8b", "--market", MARKET, "--engine", "vllm,nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.output
