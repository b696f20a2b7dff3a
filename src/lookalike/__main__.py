"""``python -m lookalike`` runs the command line."""

from __future__ import annotations

import sys

from lookalike.cli import main

sys.exit(main())
