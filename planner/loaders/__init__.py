"""Readers of files: they turn YAML and JSON into validated schemas, with errors that name the line."""
