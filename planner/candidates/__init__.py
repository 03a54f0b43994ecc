"""Legal layouts, each with its numbers precomputed, and why every rejected layout was rejected."""
