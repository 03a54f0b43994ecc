"""planner: will this LLM fit on these machines, how should it be split, and how fast will it run."""

__version__ = "0.1.0"
