"""lookalike.model.network."""
