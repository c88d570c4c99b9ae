"""Fixtures for fault injection: a v1 of each test's own (it gets stopped and written to)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.demo import running_demo

from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.demo.servers import DemoV1


@pytest.fixture
def own_v1(test_dir: Path) -> Iterator[DemoV1]:
    """A demo v1 for this test alone (scale 1, about a second to seed)."""
    with running_demo(test_dir / "v1") as demo:
        yield demo


@pytest.fixture
def v2(own_v2: LocalV2Target) -> LocalV2Target:
    """Fault injection kills, fills and crashes v2: each test here has its own."""
    return own_v2
