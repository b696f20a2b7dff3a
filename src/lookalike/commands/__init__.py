"""Sub-commands of ``lookalike`` that live outside :mod:`lookalike.cli` (one module each)."""
