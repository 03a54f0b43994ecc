"""--report FILE.html and --pictures DIR on deploy, whatif (buying and changing) and sweep."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from planner.cli import main
from tests.test_report_html import check_page

ROOT = Path(__file__).resolve().parent.parent
HOMELAB = str(ROOT / "inventories" / "homelab.yaml")
MARKET = str(ROOT / "tests" / "data" / "market-small.yaml")
PNG = b"\x89PNG\r\n\x1a\n"


def _check_pictures(folder: Path, names: list[str]) -> None:
    for name in names:
        svg, png = folder / f"{name}.svg", folder / f"{name}.png"
        assert png.read_bytes().startswith(PNG) and png.stat().st_size > 5000, name
        ET.fromstring(svg.read_text(encoding="utf-8"))  # well-formed


@pytest.mark.parametrize(("command", "kind", "pictures", "table"), [
    (["deploy", "--inventory", HOMELAB, "--model", "llama-3.1-8b", "--users", "4", "--context", "8192"], "deploy",
     ["memory", "topology"], None),
    (["whatif", "--model", "llama-3.1-8b", "--users", "12", "--context", "8192", "--min-tokens-per-s", "20",
      "--market", MARKET], "buy", ["memory", "topology", "pareto"], "Cheapest machines"),
    (["whatif", "--inventory", HOMELAB, "--model", "llama-3.1-8b", "--users", "4", "--add", "rtx-4090@gpu-box"], "whatif",
     ["memory", "topology"], "What if"),
    (["sweep", "--inventory", HOMELAB, "--model", "llama-3.1-8b", "--users", "1,8", "--context", "4096,32768"], "sweep",
     ["memory", "topology", "sweep"], "Largest users per context"),
])
def test_report_and_pictures_of_each_answer(runner, tmp_path: Path, command, kind, pictures, table) -> None:
    page, folder = tmp_path / "report.html", tmp_path / "pictures"
    result = runner.invoke(main, command + ["--report", str(page), "--pictures", str(folder)])
    assert result.exit_code == 0, result.output
    _check_pictures(folder, pictures)
    assert sorted(p.stem for p in folder.glob("*.svg")) == sorted(pictures)
    text = page.read_text(encoding="utf-8")
    check_page(text)
    assert "llama-3.1-8b" in text and text.count("<svg") == len(pictures)
    if table:
        assert table in text


def test_a_bad_report_path_fails_before_planning(runner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["deploy", "--inventory", HOMELAB, "--model", "llama-3.1-8b",
                                  "--report", str(tmp_path / "missing" / "r.html")])
    assert result.exit_code == 2 and "Plan for" not in result.output
