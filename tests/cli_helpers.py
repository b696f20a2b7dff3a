"""Checks shared by the command-line tests."""

from __future__ import annotations

import pytest


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    """stderr holds exactly one ``lookalike: error: …`` line, naming each of ``words``."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("lookalike: error: ")
    for word in words:
        assert word in err[0], err[0]
