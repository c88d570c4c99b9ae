"""The demo v1 the tests migrate from: starting one, and a V1Source on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.resources.v1 import V1Source
from support.ports import free_port


def v1_source(demo: Any, env_file: Path | None = None) -> V1Source:
    """A V1Source on the session's demo (or on ``env_file`` when given)."""
    return V1Source(
        env_file=str(env_file) if env_file else None,
        default_env_file=str(demo.base_dir / "no-such-file.env"),
        demo_dir=str(demo.base_dir),
        demo_pg_port=demo.pg_port,
        demo_redis_port=demo.redis_port,
        demo_scale=demo.scale,
        demo_durable=False,
        demo_redis_server=demo.redis_server,
    )


@contextlib.contextmanager
def running_demo(folder: Path, redis_server: str = "") -> Iterator[DemoV1]:
    """A seeded demo v1 (scale 1) under ``folder``, stopped on exit."""
    demo = DemoV1(
        folder, free_port(), free_port(), scale=1, durable=False, redis_server=redis_server
    )
    try:
        demo.ensure()
        yield demo
    finally:
        demo.stop()
