"""Every benchmark still runs: each script in benchmarks/ has a --quick mode (tiny data, seconds).

The numbers are printed for people and never asserted here: a timing depends on the machine.
What fails the test is a benchmark that no longer runs (an import that moved, an exception).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The benchmarks' --quick runs start together once: the module runs on one pytest-xdist worker
# (support/groups.py says why the mark is written here).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_benchmarks")]

BENCHMARKS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


def test_every_benchmark_is_found():
    assert {p.name for p in BENCHMARKS} >= {
        "forward_migration.py", "search_load.py", "vector_search.py"
    }  # fmt: skip


@dataclass
class QuickRun:
    """One benchmark's --quick run in the background; its output goes to files (a pipe nobody
    reads while it runs could fill up and stall it)."""

    proc: subprocess.Popen
    stdout: Path
    stderr: Path

    def finish(self, timeout: float) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return (
            code,
            self.stdout.read_text(errors="replace"),
            self.stderr.read_text(errors="replace"),
        )


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, QuickRun]]:
    """Every benchmark's --quick run, all started at once: each starts servers of its own on
    free ports and folders of its own, and on two cores one computes while another waits on
    its servers, so together they take about half as long as one after the other."""
    folder = tmp_path_factory.mktemp("benchmarks")
    runs: dict[str, QuickRun] = {}
    for script in BENCHMARKS:
        out, err = folder / f"{script.stem}.out", folder / f"{script.stem}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(script), "--quick"],
                stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        runs[script.stem] = QuickRun(proc, out, err)
    try:
        yield runs
    finally:
        for run in runs.values():
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_runs_in_quick_mode(script: Path, quick_runs: dict[str, QuickRun]):
    returncode, stdout, stderr = quick_runs[script.stem].finish(timeout=600)
    assert returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "Traceback" not in stderr
    assert stdout.strip(), "a benchmark prints its numbers"
