"""The suite's own machinery for running in parallel: xdist groups really keep tests on one
worker, tests sharing a module's fixture must be grouped, each worker picks ports of its own, and
scratch folders go where they should. Each pytest run here is a real one in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.ports import HIGH, LOW, worker_range
from support.scratch import TMPDIR_ENV, scratch_root

GROUPED = """
import os, time
import pytest

def _record(name):
    with open(os.path.join(os.path.dirname(__file__), "ran.txt"), "a") as out:
        out.write(f"{name} {os.environ.get('PYTEST_XDIST_WORKER', '-')}\\n")
    time.sleep(0.2)

@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    _record(f"grouped{i}")

@pytest.mark.parametrize("i", range(6))
def test_free(i):
    _record(f"free{i}")
"""


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (folder / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_loadgroup_runs_a_group_on_one_worker_and_the_rest_on_both(tmp_path: Path):
    (tmp_path / "test_g.py").write_text(GROUPED)
    done = _pytest(tmp_path, "-n", "2", "--dist", "loadgroup", "test_g.py")
    assert done.returncode == 0, done.stdout + done.stderr
    ran = dict(line.split() for line in (tmp_path / "ran.txt").read_text().splitlines())
    grouped = {w for name, w in ran.items() if name.startswith("grouped")}
    assert len(ran) == 12 and len(grouped) == 1, ran  # the group: one worker
    assert set(ran.values()) == {"gw0", "gw1"}, ran  # the others: spread over both


def test_a_module_fixture_shared_without_a_group_stops_the_run(tmp_path: Path):
    support = Path(__file__).resolve().parents[1]
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(support)!r})
        import pytest
        from support import groups

        def pytest_collection_modifyitems(items):
            found = groups.problems(items)
            if found:
                raise pytest.UsageError("\\n".join(found))
        """)
    )
    module = textwrap.dedent("""
        import pytest

        @pytest.fixture(scope="module")
        def shared():
            return object()

        {mark}
        def test_one(shared):
            pass

        {mark}
        def test_two(shared):
            pass

        def test_alone():
            pass
        """)
    (tmp_path / "test_m.py").write_text(module.format(mark=""))
    done = _pytest(tmp_path, "--collect-only", "-q", "test_m.py")
    assert done.returncode != 0
    assert "test_m.py's module-scoped fixture 'shared'" in done.stdout + done.stderr
    assert "test_m.py::test_one" in done.stdout + done.stderr
    (tmp_path / "test_m.py").write_text(module.format(mark='@pytest.mark.xdist_group("m")'))
    done = _pytest(tmp_path, "--collect-only", "-q", "test_m.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_worker_picks_ports_in_a_range_of_its_own():
    assert worker_range("", "") == (LOW, HIGH)
    ranges = [worker_range(f"gw{i}", "3") for i in range(3)]
    for (low, high), (next_low, _) in zip(ranges, ranges[1:], strict=False):
        assert low < high <= next_low
    assert ranges[0][0] == LOW and ranges[-1][1] <= HIGH


def test_scratch_root_takes_the_named_folder_else_shm_with_room(tmp_path: Path):
    assert scratch_root({TMPDIR_ENV: str(tmp_path)}) == tmp_path.resolve()
    with pytest.raises(pytest.UsageError, match=f"{TMPDIR_ENV}=.*is not a writable folder"):
        scratch_root({TMPDIR_ENV: str(tmp_path / "missing")})
    assert scratch_root({}, shm=tmp_path, min_free=1) == tmp_path
    assert scratch_root({}, shm=tmp_path, min_free=1 << 62) is None  # not enough room
    assert scratch_root({}, shm=tmp_path / "missing", min_free=1) is None
