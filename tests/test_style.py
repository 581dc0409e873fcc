"""DESIGN.md §5: ruff clean everywhere, mypy --strict clean on host/ (configured in pyproject)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["mypy"]], ids=["ruff", "mypy"])
def test_clean(tool: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", *tool], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
