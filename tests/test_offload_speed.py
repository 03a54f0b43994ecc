"""The host-offload speed model against measured llama.cpp runs it was not fitted to
(tests/data/offload_measurements.yaml, `use: holdout`), and the data's own consistency."""

from __future__ import annotations

import statistics

import pytest

from tests.offload_cases import ROWS, compare_row

HELD_OUT = [r for r in ROWS if r["use"] == "holdout"]


def test_rows_are_sourced_and_split_between_fit_and_holdout() -> None:
    assert len({r["id"] for r in ROWS}) == len(ROWS)
    for row in ROWS:
        assert row["source"].startswith("https://") and row["quote"] and row["use"] in ("fit", "holdout")
    assert len(HELD_OUT) >= 4 and len(ROWS) - len(HELD_OUT) >= 5
    shapes = {("n_cpu_moe" in r["offload"], "cpu_layers" in r["offload"]) for r in HELD_OUT}
    assert shapes == {(True, False), (False, True)}  # both shapes are held out


@pytest.fixture(scope="module")
def held_out() -> list:
    out = []
    for row in HELD_OUT:
        found = compare_row(row)
        assert not isinstance(found, str), f"{row['id']}: {found}"
        out += found
    return out


def test_held_out_decode_within_25_percent_each_and_15_at_the_median(held_out) -> None:
    errors = {c.row["id"]: c.error for c in held_out if c.metric == "decode_tokens_per_s"}
    assert all(abs(e) <= 0.25 for e in errors.values()), errors
    assert statistics.median(abs(e) for e in errors.values()) <= 0.15, errors
