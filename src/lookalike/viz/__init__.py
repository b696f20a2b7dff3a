"""lookalike.viz."""
