"""The run-book every bundle carries (README.md): what runs where, what to fill in, the order of
steps, ports, health checks and the start-up lines that say the launch is what was planned."""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.schemas.plan import ServePlan, TrainPlan


@dataclass
class Runbook:
    """Sections of README.md, written in order."""

    title: str
    intro: list[str] = field(default_factory=list)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)

    def add(self, heading: str, lines: list[str]) -> None:
        if lines:
            self.sections.append((heading, lines))

    def render(self) -> str:
        out = [f"# {self.title}", "", *self.intro, ""]
        for heading, lines in self.sections:
            out += [f"## {heading}", "", *lines, ""]
        return "\n".join(out).rstrip() + "\n"


def plan_intro(plan: ServePlan | TrainPlan, target: str, version_note: str) -> list[str]:
    """Who made this bundle, from which plan, for which engine version."""
    req = plan.request
    return [f"Launch files for `{req.model.name}` on inventory `{plan.inventory.name}`, exported from a "
            f"{plan.mode} plan (schema {plan.schema_version}) to **{target}**.",
            "",
            f"- Engine: {req.engine.name} {req.engine.version}; {version_note}.",
            f"- Model digest: `{req.model.digest}`; inventory digest: `{plan.inventory.digest}`.",
            "- `plan check PLAN --inventory FILE` tells whether the plan still holds before you start."]


def placeholder_lines(placeholders: dict[str, str]) -> list[str]:
    """The table of values to fill in (each script refuses to start while one it uses is unset)."""
    if not placeholders:
        return ["Nothing: every address and path is in the files."]
    lines = ["Set these in the environment of each machine (or edit the scripts); a script stops with the "
             "variable's name while one it needs is unset.", "", "| variable | what to put there |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in sorted(placeholders.items())]
    return lines
