"""Files exports carry unchanged (planner/catalog/exports/): read once, handed to the exporters."""

from __future__ import annotations

import functools
from pathlib import Path

from planner.loaders.files import read_text

FOLDER = Path(__file__).resolve().parent.parent / "catalog" / "exports"


@functools.cache
def load_export_assets() -> dict[str, str]:
    """Asset file name -> text."""
    return {p.name: read_text(p, limit=1 << 20, what="export asset") for p in sorted(FOLDER.iterdir()) if p.is_file()}
