"""Every benchmark still runs: each script in benchmarks/ has a --quick mode (tiny data, seconds).

The numbers are printed for people and never asserted here: a timing depends on the machine.
What fails the test is a benchmark that no longer runs (an import that moved, an exception).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCHMARKS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


def test_every_benchmark_is_found():
    assert {p.name for p in BENCHMARKS} >= {
        "forward_migration.py", "search_load.py", "vector_search.py"
    }  # fmt: skip


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_runs_in_quick_mode(script: Path):
    out = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert out.stdout.strip(), "a benchmark prints its numbers"
