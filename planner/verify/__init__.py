"""Independent checks of plans: every constraint recomputed from the inputs, no solver code."""

from planner.verify.serve import check_serve_plan
from planner.verify.train import check_train_plan

__all__ = ["check_serve_plan", "check_train_plan"]
