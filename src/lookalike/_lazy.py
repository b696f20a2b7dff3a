"""The one lazy-export helper: a package names its public objects without importing them.

A package's ``__init__`` maps each public name to the module that defines it, and
:func:`lazy_exports` returns the ``__getattr__`` and ``__dir__`` that import that module on
first use (PEP 562). ``import lookalike`` therefore costs milliseconds and never imports
torch; the ``TYPE_CHECKING`` imports beside each table keep IDEs and mypy informed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, table: Mapping[str, str], eager: Mapping[str, Any] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package with lazily imported names.

    Args:
        package: The package's dotted name (for error messages).
        table: Public name → dotted module that defines it.
        eager: The package's globals (names already defined appear in ``dir()``).

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.
    """

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def dir_() -> list[str]:
        return sorted(set(eager or ()) | set(table))

    return getattr_, dir_
