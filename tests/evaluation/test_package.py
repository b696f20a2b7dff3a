"""The face of ``lookalike.evaluation``: its names, imported lazily."""

from __future__ import annotations

from fresh_python import run_fresh


def test_import_evaluation_is_lazy() -> None:
    run_fresh(
        "import sys, lookalike.evaluation as e\n"
        "bad = {'torch', 'matplotlib'} & set(sys.modules)\n"
        "assert not bad, bad\n"
        "assert set(e.__all__) == {'EvalConfig', 'EvalResult', 'write_report'}\n"
        "from lookalike.evaluation.report import write_report\n"
        "assert e.write_report is write_report and e.EvalConfig.__name__ == 'EvalConfig'\n"
    )
