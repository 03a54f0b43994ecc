"""A small fixed-width text table, aligned by column."""

from __future__ import annotations

from collections.abc import Sequence
from planner.units import to_gb, to_gib


def to_text_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[bool] | None = None) -> str:
    """Render rows under a header; numbers are right-aligned unless `right` says otherwise."""
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    if right is None:
        right = [i > 0 for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_size(num_bytes: float) -> tuple[str, str]:
    """A byte count as (GB, GiB) strings with two decimals."""
    return f"{to_gb(num_bytes):,.2f}", f"{to_gib(num_bytes):,.2f}"
