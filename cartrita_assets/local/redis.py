"""A Redis-compatible server the project starts itself (by default the bundled valkey-server).

The password lives only in the 0600 config file, never on the command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cartrita_assets.envfile import RedisSettings
from cartrita_assets.errors import LocalServerError
from cartrita_assets.local import system
from cartrita_assets.local.redis_servers import ServerBinary, bundled_server
from cartrita_assets.redaction import new_password, write_private_file
from cartrita_assets.redis_copy.client import client_for

_START_TIMEOUT_S = 30  # the server forks into the background at once; only a misread config waits


@dataclass
class LocalRedis:
    """One project-managed Redis-compatible server under ``base_dir`` with AOF persistence."""

    base_dir: Path
    port: int
    log: Callable[[str], None] = lambda _msg: None
    server: ServerBinary | None = None  # None: the bundled valkey-server

    @property
    def password_file(self) -> Path:
        return self.base_dir / "requirepass.password"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "redis.pid"

    def settings(self, db: int = 0) -> RedisSettings:
        """Connection settings (password read from its 0600 file)."""
        password = self.password_file.read_text().strip()
        return RedisSettings(host="127.0.0.1", port=self.port, password=password, db=db)

    def client(self, db: int = 0) -> redis.Redis:
        """A client for database ``db``."""
        return client_for(self.settings(db))

    def ensure_running(self, password: str | None = None) -> RedisSettings:
        """Start the server unless it runs, then wait until it answers an authenticated PING.

        Args:
            password: the password to require (v2 keeps v1's credentials); None keeps the
                current one, or generates one on first start.
        """
        system.check_writable_dir(self.base_dir, "Redis server")
        if not self.password_file.exists():
            write_private_file(self.password_file, (password or new_password()) + "\n")
        if not self.is_running():
            self._set_password(password)
            self._start()
        elif password and password != self.settings().password:
            # running with another password: change it live, then remember it
            self.client().config_set("requirepass", password)
            self._set_password(password)
        system.wait_until(self._answers_ping, 15, f"Redis on port {self.port}")
        return self.settings()

    def is_running(self) -> bool:
        """True when the pid file names a live process and it answers PING."""
        pid = self._pid()
        return pid is not None and system.process_alive(pid) and self._answers_ping()

    def stop(self) -> bool:
        """Shut the server down (it writes its AOF first). False when it was not running."""
        pid = self._pid()
        if pid is None or not system.process_alive(pid):
            return False
        # no retries: the server closes the connection as it exits, which is success here (with
        # redis-py's default retries that costs seconds of reconnect attempts)
        client = self.client()
        client.connection_pool.connection_kwargs["retry"] = Retry(NoBackoff(), 0)
        try:
            client.shutdown(save=True)
        except (redis.ConnectionError, redis.ResponseError):
            os.kill(pid, signal.SIGTERM)
        system.wait_until(lambda: not system.process_alive(pid), 15, "Redis to stop")
        return True

    def _set_password(self, password: str | None) -> None:
        if password:
            write_private_file(self.password_file, password + "\n")

    def _start(self) -> None:
        if not system.port_is_free(self.port):
            raise LocalServerError(
                f"Port {self.port} on 127.0.0.1 is already in use by another process, so the "
                f"Redis server in {self.base_dir} cannot start. Stop that process or choose "
                "another port (see `cartrita servers --help`)."
            )
        conf = self.base_dir / "redis.conf"
        write_private_file(conf, self._config())
        self.log(f"Starting Redis on 127.0.0.1:{self.port}")
        server = self.server or bundled_server()
        try:
            # the 0600 file's text through stdin ("-"), not its path: valkey reads a config path
            # holding * ? or [ as a glob pattern, and a folder name may hold any of them
            result = subprocess.run(
                [server.argv0, "-"],
                executable=server.path,
                input=conf.read_text(),
                capture_output=True,
                text=True,
                timeout=_START_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LocalServerError(
                f"The Redis server in {self.base_dir} did not start as a daemon within "
                f"{_START_TIMEOUT_S} s (it was stopped): it did not read {conf}. Check that "
                "file and the server binary."
            ) from None
        if result.returncode != 0:
            raise LocalServerError(f"redis-server failed to start: {result.stdout[-500:]}")

    def _config(self) -> str:
        password = self.password_file.read_text().strip()
        return (
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    "protected-mode yes",
                    "daemonize yes",
                    f"pidfile {self.pid_file}",
                    f"logfile {self.base_dir / 'redis.log'}",
                    f"dir {self.base_dir}",
                    "appendonly yes",
                    "databases 16",
                    # a replica (follow mode's v2) syncs at once instead of after the default
                    # 5 s wait for more replicas to share the transfer: only one ever comes
                    "repl-diskless-sync-delay 0",
                    f"requirepass {password}",
                ]
            )
            + "\n"
        )

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _answers_ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.ConnectionError, redis.AuthenticationError, redis.ResponseError, OSError):
            return False
