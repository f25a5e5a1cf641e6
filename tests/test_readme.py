"""The README cannot rot: its Python quickstart runs and prints what the README says it prints, and
the README stays short."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> tuple[str, str]:
    """The quickstart's code and the output the README shows for it."""
    section = README.read_text().split("## Quickstart in Python", 1)[1]
    code, expected = re.search(r"```python\n(.*?)```.*?```text\n(.*?)```", section, re.S).groups()
    return code, expected


def test_readme_is_short_and_its_quickstart_too():
    assert README.stat().st_size <= 12 * 1024
    assert len(quickstart()[0].strip().splitlines()) <= 15


@pytest.mark.integration
def test_quickstart_prints_what_the_readme_shows(tmp_path):
    code, expected = quickstart()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(README.parent)})
    assert result.returncode == 0, result.stderr
    printed = [line.rsplit(" ", 1) for line in result.stdout.strip().splitlines()]
    shown = [line.rsplit(" ", 1) for line in expected.strip().splitlines()]
    assert [label for label, _ in printed] == [label for label, _ in shown]
    for (label, value), (_, want) in zip(printed, shown):
        assert float(value) == pytest.approx(float(want), abs=0.02), label  # float rounding differs across machines
