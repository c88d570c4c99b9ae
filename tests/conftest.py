"""Session fixtures: a real demo v1 (PostgreSQL 18 + pgvector, Redis) and one v2 for the run,
reset to a fresh v2 before each test (``support.servers``).

Under pytest-xdist each worker is a session of its own: its own servers, on ports of its own
(``support.ports``), under a scratch folder of its own (``support.scratch``).
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from support import groups
from support.demo import running_demo
from support.ports import free_port
from support.runs import local_resources
from support.scratch import scratch_root, share_run_dir, use_scratch_root
from support.servers import SessionV2

from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.demo.servers import DemoV1

PHASES = pytest.StashKey[dict[str, pytest.TestReport]]()
RUN_DIR = pytest.StashKey[Path | None]()


def pytest_configure(config: pytest.Config) -> None:
    """Scratch folders on tmpfs when it has room (``support.scratch``): set before pytest picks
    its ``tmp_path`` base and before any server starts.

    A suite started in the background by a shell inherits SIGINT (and, from some launchers,
    SIGTERM) as ignored, and so would every process a test starts: a test that stops a server or
    ``dagster dev`` with a signal would then wait out its timeout. The default dispositions are put
    back first."""
    for number, default in (
        (signal.SIGTERM, signal.SIG_DFL),
        (signal.SIGINT, signal.default_int_handler),
    ):
        if signal.getsignal(number) == signal.SIG_IGN:
            signal.signal(number, default)
    root = scratch_root()
    if root is not None:
        use_scratch_root(root)
    config.stash[RUN_DIR] = share_run_dir()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run-wide folder goes with the run (its first process made it)."""
    shared = config.stash.get(RUN_DIR, None)
    if shared is not None:
        shutil.rmtree(shared, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse to run when tests sharing a module-scoped fixture or the control plane are not in
    one xdist group (``support.groups``): they would set it up once per worker."""
    found = groups.problems(items)
    if found:
        raise pytest.UsageError("\n".join(found))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Keep each phase's report on the test, for fixtures that act on the outcome."""
    report = yield
    item.stash.setdefault(PHASES, {})[report.when] = report
    return report


def passed(node: pytest.Item) -> bool:
    """The test's setup and call both passed (read during its teardown)."""
    phases = node.stash.get(PHASES, {})
    return "call" in phases and phases["setup"].passed and phases["call"].passed


@pytest.fixture(scope="session")
def base_dir() -> Iterator[Path]:
    """A 0755 scratch folder: the servers run as another user when tests run as root, and
    pytest's own tmp_path is 0700."""
    path = Path(tempfile.mkdtemp(prefix="cartrita-tests-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_v1(base_dir: Path) -> Iterator[DemoV1]:
    """The demo v1, seeded once per session (scale 1)."""
    with running_demo(base_dir / "demo-v1") as demo:
        yield demo


@pytest.fixture
def test_dir(base_dir: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh 0755 folder for one test; deleted when the test passed, kept until the end of
    the run when it failed."""
    path = base_dir / "t" / request.node.name[:60]
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    path.chmod(0o755)
    yield path
    if passed(request.node):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def session_v2(base_dir: Path) -> Iterator[SessionV2]:
    """The run's v2 servers (started once)."""
    servers = SessionV2(base_dir / "v2")
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def v2(session_v2: SessionV2) -> LocalV2Target:
    """The run's v2, reset for this test: no databases or roles of earlier tests, Redis empty,
    running. Tests that kill or break v2 use ``own_v2`` instead."""
    return session_v2.reset()


@pytest.fixture
def own_v2(test_dir: Path) -> Iterator[LocalV2Target]:
    """A v2 of this test's own (fault injection kills it; a fresh server starts in about a
    second)."""
    target = LocalV2Target(
        base_dir=str(test_dir / "v2"), pg_port=free_port(), redis_port=free_port(), durable=False
    )
    try:
        yield target
    finally:
        target.stop(lambda _m: None)


@pytest.fixture
def resources(demo_v1: DemoV1, v2: LocalV2Target, test_dir: Path, base_dir: Path) -> dict[str, Any]:
    """The local environment's resources, wired to the test's servers and folders."""
    return local_resources(demo_v1, v2, test_dir, base_dir)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    """A Dagster instance kept in memory: the runs, events and materializations a test's jobs,
    checks and sensors read, without the SQLite files and commits of an instance on disk (about
    0.9 s per forward run). ``disk_instance`` is the one on disk, for what reads its files."""
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def disk_instance() -> Iterator[dg.DagsterInstance]:
    """A Dagster instance with its storage on disk, as ``cartrita`` and ``dagster dev`` use."""
    with dg.instance_for_test() as inst:
        yield inst
