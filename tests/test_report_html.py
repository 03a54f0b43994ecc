"""The HTML report (planner.report.html): one well-formed, self-contained page that shows the plan,
checked with a small tag-balance parser and, where Debian's chromium is installed, rendered in
headless Chromium (required in CI: PLANNER_BROWSER_CHECKS=1 fails the test when no browser is found)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from planner.commands.args import DeployArgs
from planner.commands.deploy import run_deploy
from planner.commands.inventory import run_inventory_show
from planner.report.html import build_report_pictures, to_html_report
from planner.report.pictures import pictures_available
from tests.conftest import ROOT

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
BROWSER_TIMEOUT_S = 60


class PageChecker(HTMLParser):
    """Tag balance (every element closed, in order), the URLs the page would load, ids and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.urls: list[str] = []
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "poster", "action", "data") and value:
                self.urls.append(value)
            if name == "id" and value:
                self.ids.append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_page(page: str) -> PageChecker:
    checker = PageChecker()
    checker.feed(page)
    checker.close()
    assert not checker.problems, checker.problems[:5]
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    remote = [u for u in checker.urls if u.startswith(("http://", "https://", "//", "ftp:"))]
    assert remote == [], f"the page loads from the network: {remote[:3]}"
    assert all(u.startswith(("data:", "#")) for u in checker.urls), checker.urls[:3]
    assert "script" not in checker.tags and "link" not in checker.tags and "iframe" not in checker.tags
    assert len(checker.ids) == len(set(checker.ids)), "two elements share an id"
    return checker


def deploy_dict(inventory: str, **fields: Any) -> tuple[dict[str, Any], int]:
    result = run_deploy(DeployArgs(inventory=str(ROOT / "inventories" / inventory), **fields))
    return result.data, result.exit_code


@pytest.fixture(scope="module")
def plan() -> dict[str, Any]:
    data, code = deploy_dict("homelab.yaml", model="llama-3.1-8b", users=4, context=8192)
    assert code == 0
    return data


@pytest.fixture(scope="module")
def inventory() -> dict[str, Any]:
    return run_inventory_show(str(ROOT / "inventories" / "homelab.yaml"))[0]


@pytest.fixture(scope="module")
def report(plan, inventory) -> str:
    assert pictures_available(), "matplotlib is in the test extra: pip install -e '.[test]'"
    pictures = build_report_pictures(plan, inventory)
    assert set(pictures) == {"memory", "topology"}
    tables = [{"title": "What if", "columns": ["scenario", "fits", "tokens/s"], "rows": [["as is", True, 254.0], ["+1 rtx-3090", True, None]]}]
    return to_html_report(plan, inventory=inventory, pictures=pictures, tables=tables)


def _device_ids(plan: dict[str, Any]) -> list[str]:
    return [d["id"] for r in plan["replicas"] for s in r["stages"] for d in s["devices"]]


def test_report_is_well_formed_self_contained_and_shows_the_plan(report, plan) -> None:
    checker = check_page(report)
    text = "".join(checker.text)
    assert plan["request"]["model"]["name"] in text and "vLLM" in text
    for device in _device_ids(plan) + plan["unused_devices"]:
        assert device in text
    assert checker.tags.count("svg") == 2 and checker.tags.count("table") >= 4
    assert "What if" in text and "+1 rtx-3090" in text
    assert f"{plan['performance']['decode_tokens_per_s_total']:,.2f}" in text  # the summary's total speed
    assert "<?xml" not in report and "<!DOCTYPE svg" not in report  # SVG inlined without its prolog


def test_the_same_plan_gives_the_same_page(report, plan, inventory) -> None:
    again = to_html_report(plan, inventory=inventory, pictures=build_report_pictures(plan, inventory),
                           tables=[{"title": "What if", "columns": ["scenario", "fits", "tokens/s"],
                                    "rows": [["as is", True, 254.0], ["+1 rtx-3090", True, None]]}])
    assert again == report


def test_every_string_is_escaped(plan) -> None:
    hostile = "<script>alert(1)</script>"
    tampered = {**plan, "request": {**plan["request"], "model": {**plan["request"]["model"], "name": hostile}},
                "explanation": [f"a & b {hostile}"]}
    page = to_html_report(tampered, tables=[{"title": hostile, "columns": [hostile], "rows": [[hostile]]}], pictures={})
    checker = check_page(page)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert hostile in "".join(checker.text)


def test_png_pictures_are_embedded_as_data_uris(plan) -> None:
    assert pictures_available(), "matplotlib is in the test extra: pip install -e '.[test]'"
    from planner.report.pictures import build_memory_figure

    page = to_html_report(plan, pictures={"memory": build_memory_figure(plan, "png")})
    checker = check_page(page)
    assert len(checker.urls) == 1 and checker.urls[0].startswith("data:image/png;base64,iVBORw0KGgo")


def test_without_matplotlib_the_report_renders_and_says_how_to_get_pictures(plan, inventory, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    pictures = build_report_pictures(plan, inventory)
    assert pictures == {}
    page = to_html_report(plan, inventory=inventory, pictures=pictures)
    check_page(page)
    assert "pip install &#x27;planner[pictures]&#x27;" in page and "<svg" not in page


def test_training_and_infeasible_plans_render() -> None:
    train, code = deploy_dict("homelab.yaml", model="llama-3.1-8b", mode="train", lora_rank=16)
    assert code == 0
    text = "".join(check_page(to_html_report(train, pictures={})).text)
    assert "rank 0 stage 0" in text and "optimizer states GiB" in text and "MFU" in text
    infeasible, code = deploy_dict("homelab.yaml", model="llama-3.1-70b", users=4)
    assert code == 1
    text = "".join(check_page(to_html_report(infeasible, pictures={})).text)
    assert "no plan fits" in text and infeasible["explanation"][0] in text


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("PLANNER_BROWSER_CHECKS") == "1":
            pytest.fail("PLANNER_BROWSER_CHECKS=1 but chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--enable-logging=stderr", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)


def test_report_renders_in_headless_chromium(report, plan, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report, encoding="utf-8")
    dumped = _browser(tmp_path, "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    console = [line for line in dumped.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console[:3]  # the page logged nothing: no script, no error
    dom = dumped.stdout
    assert plan["request"]["model"]["name"] in dom
    assert "Memory per device" in dom and all(device in dom for device in _device_ids(plan))
    assert dom.count("<svg") == 2 and dom.count("</svg>") == 2  # both pictures parsed as inline SVG
    assert "<text" in dom  # with their labels as text
    shot = tmp_path / "report.png"
    taken = _browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", page.as_uri())
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
