"""The v1 source: the user's v1 environment file, or the demo v1 when there is none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.envfile import V1Settings, read_env_file
from cartrita_assets.envfile.cutover import v1_settings_file
from cartrita_assets.environments import resolve_v1_env_file
from cartrita_assets.errors import EnvFileError


class V1Source(dg.ConfigurableResource):
    """Where v1's PostgreSQL and Redis are, read from v1's ``.env`` at run time.

    With ``env_file`` unset, ``default_env_file`` is used when it exists; otherwise, if
    ``allow_demo``, v1 is the demo (synthetic data, clearly labelled in every output).
    """

    env_file: str | None = None
    default_env_file: str = ".env"
    allow_demo: bool = True
    demo_dir: str = ".cartrita/demo-v1"
    demo_pg_port: int = 15432
    demo_redis_port: int = 16379
    demo_scale: int = 1
    demo_durable: bool = True
    demo_redis_server: str = ""

    def resolved_env_file(self) -> Path | None:
        """The environment file in use, or None when v1 is the demo."""
        return resolve_v1_env_file(self.env_file, self.default_env_file, self.allow_demo)

    def is_demo(self) -> bool:
        """True when v1 is the synthetic demo."""
        return self.resolved_env_file() is None

    def demo(self, log: Callable[[str], None] = lambda _m: None) -> DemoV1:
        """The demo v1 (not started)."""
        return DemoV1(
            Path(self.demo_dir), self.demo_pg_port, self.demo_redis_port,
            scale=self.demo_scale, durable=self.demo_durable, log=log,
            redis_server=self.demo_redis_server,
        )  # fmt: skip

    def settings(
        self, log: Callable[[str], None] = lambda _m: None, start_demo: bool = True
    ) -> V1Settings:
        """v1's settings, starting the demo first when v1 is the demo (unless ``start_demo`` is
        False: commands that only look read the demo's file and never start a server).

        Once ``.env.v1`` exists beside the ``.env`` (saved by k8s_secrets before the cutover), it
        is v1's record: after ``cp .env.v2 .env`` the ``.env`` describes v2, not v1.
        """
        return V1Settings.from_env_file(read_env_file(self.settings_file(log, start_demo)))

    def settings_file(
        self, log: Callable[[str], None] = lambda _m: None, start_demo: bool = True
    ) -> Path:
        """The file v1's settings are read from: ``.env.v1`` when it exists, else the ``.env``."""
        return v1_settings_file(self.env_path(log, start_demo))

    def env_path(
        self, log: Callable[[str], None] = lambda _m: None, start_demo: bool = True
    ) -> Path:
        """The environment file in use: the user's, or the demo's generated one (the demo is
        started first unless ``start_demo`` is False)."""
        path = self.resolved_env_file()
        if path is not None:
            return path
        demo = self.demo(log)
        if start_demo:
            demo.ensure()
        elif not demo.env_file.exists():
            raise EnvFileError(
                f"{demo.env_file}: the demo v1 has not been set up yet, so there is nothing to "
                "describe. Run `cartrita forward` (or `cartrita demo start`) first, or pass "
                "--env-file with v1's .env."
            )
        return demo.env_file

    def describe(self) -> dict[str, str]:
        """Where v1 comes from, for manifests and metadata (no secrets)."""
        path = self.resolved_env_file()
        if path is None:
            return {
                "kind": "demo",
                "note": f"DEMO v1: synthetic Cartrita data set (scale={self.demo_scale})",
                "env_file": str(Path(self.demo_dir) / ".env"),
            }
        return {"kind": "env-file", "note": f"v1 from {path.resolve()}", "env_file": str(path)}
