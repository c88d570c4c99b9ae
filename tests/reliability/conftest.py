"""Fixtures for fault injection: a v1 of each test's own (it gets stopped and written to)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.local.system import free_port


@pytest.fixture
def own_v1(test_dir: Path) -> Iterator[DemoV1]:
    """A demo v1 for this test alone (scale 1, about a second to seed)."""
    demo = DemoV1(test_dir / "v1", free_port(), free_port(), scale=1, durable=False)
    try:
        demo.ensure()
        yield demo
    finally:
        demo.stop()
