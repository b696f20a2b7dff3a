"""lookalike.dedup.groups."""
