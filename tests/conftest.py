"""Session fixtures: a real demo v1 (PostgreSQL 18 + pgvector, Redis) and per-test v2 servers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from helpers import running_demo, v1_source

from cartrita_assets.backup.store import BackupStore
from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.local.system import free_port
from cartrita_assets.resources.embedder import EmbedderResource
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.reports import ReportStore


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
def test_dir(base_dir: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh 0755 folder for one test."""
    path = base_dir / "t" / request.node.name[:60]
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path


@pytest.fixture
def v2(test_dir: Path) -> Iterator[LocalV2Target]:
    """A v2 of its own for each test (a fresh server starts in well under a second)."""
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
    return {
        "v1": v1_source(demo_v1),
        "v2": v2,
        "backups": BackupStore(root=str(test_dir / "backups")),
        "migration_lock": MigrationLock(path=str(test_dir / "migration.lock")),
        # the real local model; the session's cache spares re-embedding the same demo texts
        "embedder": EmbedderResource(cache_path=str(base_dir / "embedding-cache.sqlite")),
        "reports": ReportStore(root=str(test_dir / "reports")),
    }


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst
