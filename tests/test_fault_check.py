"""The fault-injection script end to end: every crash and cache case ends as expected.

Slow (about 4 minutes on 2 busy cores: it starts training subprocesses, fine-tunes tiny teachers
several times and builds the real MiniLM-L3), so it is deselected by default: ``pytest -m slow``.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.integration
def test_every_fault_case_ends_as_expected(capsys):
    spec = importlib.util.spec_from_file_location("fault_check", ROOT / "scripts" / "fault_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    status = script.main([])  # not pytest's own command line
    table = capsys.readouterr().out
    assert status == 0, table
    assert table.count("| yes |") == len(script.CASES)
