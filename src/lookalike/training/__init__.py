"""lookalike.training."""
