"""The repository stands alone: nothing it ships or tests refers to a folder outside the clone."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Built from parts so this file does not match itself.
OUTSIDE = "../" + "shared"
CHECKED = ("planner", "tests", "docs", "examples", "inventories")


def _files() -> list[Path]:
    out = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for folder in CHECKED:
        out += [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return out


def test_nothing_refers_outside_the_repository() -> None:
    offenders = []
    for path in _files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if OUTSIDE in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"files refer to {OUTSIDE}: {offenders}"


def test_reference_configs_are_in_the_repository() -> None:
    configs = sorted((ROOT / "tests" / "data" / "model-configs").glob("*.json"))
    assert len(configs) == 15
    for path in configs:
        assert '"_source"' in path.read_text(encoding="utf-8"), f"{path.name} names no public source"


def test_catalog_files_read_the_same_with_libyaml() -> None:
    """The package's catalog files are read with libyaml where installed: the same values and the
    same line of every field as the pure-Python YAML 1.2 loader that reads user files."""
    from planner.loaders.yamlfile import parse_yaml_text

    for path in sorted((ROOT / "planner" / "catalog").rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        slow, fast = parse_yaml_text(text, str(path)), parse_yaml_text(text, str(path), trusted=True)
        assert slow.data == fast.data and slow.marks == fast.marks, path
