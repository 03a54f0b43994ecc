"""Read a saved plan (`plan deploy -o plan.yaml`) back into its typed document."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from planner.limits import MAX_PLAN_FILE_BYTES
from planner.loaders.files import read_text
from planner.loaders.validation import to_input_error
from planner.loaders.yamlfile import parse_json_text, parse_yaml_text
from planner.schemas.plan import SCHEMA_VERSION, ServePlan, TrainPlan


def load_plan(path: str | Path) -> ServePlan | TrainPlan:
    """A plan file (YAML, or JSON for *.json), its schema_version checked before anything else."""
    path = Path(path)
    text = read_text(path, limit=MAX_PLAN_FILE_BYTES, what="plan file")
    located = parse_json_text(text, str(path)) if path.suffix == ".json" else parse_yaml_text(text, str(path))
    data = located.data
    if not isinstance(data, dict) or "schema_version" not in data:
        raise located.error((), "not a plan file: it has no schema_version (write one with `plan deploy -o FILE`)")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise located.error(("schema_version",), f"this plan has schema_version {version!r}; this planner reads "
                            f"version {SCHEMA_VERSION} only: re-run `plan deploy` to write it again")
    mode = data.get("mode")
    schema = {"serve": ServePlan, "train": TrainPlan}.get(mode) if isinstance(mode, str) else None
    if schema is None:
        raise located.error(("mode",), f"expected mode serve or train, got {mode!r}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise to_input_error(exc, located=located, schema=schema) from None

