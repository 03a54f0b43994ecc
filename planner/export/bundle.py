"""What an export produces: files by relative path, and every launch as a structured command (so
tests can hand the exact argv to the engine's own parser), plus the shell rendering of both."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from planner.errors import InputError

_PLACEHOLDER = re.compile(r"\$\{[A-Z][A-Z0-9_]*\}")


class ExportRefused(InputError):
    """The target cannot express the plan; nothing is written."""


@dataclass(frozen=True)
class Launch:
    """One process to start on one machine."""

    machine: str  # inventory node name
    role: str  # what it is, in words: "replica 0, node-rank 1 (headless)"
    argv: tuple[str, ...]  # the program and its arguments; ${NAME} marks a value the run-book lists
    env: tuple[tuple[str, str], ...] = ()
    writes: tuple[tuple[str, str], ...] = ()  # files the script writes first (path, text with ${NAME} expanded by bash)


@dataclass(frozen=True)
class Bundle:
    """An export: text files by relative path and the launches they contain."""

    target: str
    files: dict[str, str]
    launches: tuple[Launch, ...] = field(default=())


def quote(token: str) -> str:
    """A shell word: placeholders stay expandable (double quotes), everything else single-quoted if needed."""
    if _PLACEHOLDER.search(token):
        if re.search(r'["\\`]', token) or re.search(r"\$(?!\{[A-Z][A-Z0-9_]*\})", token):
            raise ExportRefused(f"cannot write {token[:60]!r} into a script: it mixes a ${{NAME}} placeholder with "
                                f"quotes, backslashes or other $", field="--model-path")
        return f'"{token}"'
    return shlex.quote(token)


def to_shell_line(argv: tuple[str, ...], *, indent: str = "  ", width: int = 100) -> str:
    """argv as one shell command, continued over lines at option boundaries."""
    words = [quote(t) for t in argv]
    lines: list[str] = []
    current = ""
    for i, word in enumerate(words):
        starts_option = word.startswith("-") and i > 0
        if current and starts_option and len(current) + 1 + len(word) > width:
            lines.append(current + " \\")
            current = indent + word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\n".join(lines)


def to_script(launch: Launch, *, placeholders: dict[str, str], header: list[str]) -> str:
    """A bash script that starts one launch: it refuses to run while a placeholder it uses is unset."""
    texts = (*launch.argv, *(v for _, v in launch.env), *(t for _, t in launch.writes))
    used = sorted({m[2:-1] for token in texts for m in _PLACEHOLDER.findall(token)})
    out = ["#!/usr/bin/env bash", *[f"# {line}" if line else "#" for line in header], "set -euo pipefail", ""]
    for name in used:
        message = shlex.quote(f"set {name}: {placeholders.get(name, 'see README.md')}")
        out.append(f'[ -n "${{{name}:-}}" ] || {{ echo {message} >&2; exit 2; }}')
    if used:
        out.append("")
    for key, value in launch.env:
        out.append(f"export {key}={quote(value)}")
    if launch.env:
        out.append("")
    for path, text in launch.writes:
        if re.search(r"[`\\]|\$(?!\{[A-Z][A-Z0-9_]*\})", text) or "\nPLANNER_EOF\n" in text:
            raise ExportRefused(f"cannot write {path} from a script: it holds backquotes, backslashes or $", field="--to")
        out += [f"cat > {shlex.quote(path)} <<PLANNER_EOF", text.rstrip("\n"), "PLANNER_EOF", ""]
    out.append("exec " + to_shell_line(launch.argv))
    return "\n".join(out) + "\n"


def placeholder(name: str) -> str:
    """The ${NAME} form of a value ops fill in."""
    return "${" + name + "}"


def var_name(text: str) -> str:
    """An environment-variable spelling of a machine name: hgx-1 -> HGX_1."""
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")


def substitute(token: str, values: dict[str, str]) -> str:
    """A token with its placeholders replaced (tests; ops do it with their environment)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(0)[2:-1]], token)
