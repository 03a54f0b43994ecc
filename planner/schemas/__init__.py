"""Validated, frozen pydantic models. No I/O and no solver here."""
