"""lookalike.metrics."""
