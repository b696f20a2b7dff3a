"""lookalike.imaging."""
