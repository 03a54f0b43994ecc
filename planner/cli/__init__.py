"""The `plan` command line (planner/cli/main.py); options are declared once in options.py."""

from planner.cli.main import main

__all__ = ["main"]
