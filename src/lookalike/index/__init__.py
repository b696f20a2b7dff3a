"""lookalike.index.index."""
