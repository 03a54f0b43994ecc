"""The planner's typed errors; the CLI maps each family to an exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PlannerError(Exception):
    """Base of every error the planner raises on purpose."""

    exit_code = 1


class InputError(PlannerError):
    """A user-written input (file, flag, value) is not what the planner expects.

    The message names the file, the line (when known), the field and what was expected.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.suggestion = suggestion
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        return " ".join(f"{where}{field}{self.detail}{hint}".splitlines())  # always one line


class CatalogError(InputError):
    """A name is not in a built-in catalog, or a catalog entry is malformed."""


class InfeasibleError(PlannerError):
    """No plan satisfies the constraints; the message says which one binds."""

    exit_code = 1


def shorten(text: str, limit: int = 80) -> str:
    """A user's value as shown in a message: at most `limit` characters."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest_name(name: str, choices: Iterable[str]) -> str | None:
    """Return the closest valid name to a mistyped one, or None when nothing is close."""
    if len(name) > 200:
        return None
    matches = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if not matches:
        return None
    lowered = {c.lower(): c for c in choices}
    return lowered[matches[0]]
