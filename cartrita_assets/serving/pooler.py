"""A local PgBouncer in front of v2: transaction pooling, SCRAM authentication.

The binary is Debian's ``pgbouncer`` package (1.18 on bookworm; no PyPI package ships PgBouncer),
which ``scripts/bootstrap.sh`` installs as root. The auth file holds the application role's SCRAM
verifier exactly as v2 stores it in ``pg_authid``: PgBouncer checks the client's proof against it
and, because the verifier is the server's own, logs in to v2 with the keys that proof yields. No
password is written anywhere and none reaches a command line. Both files are 0600.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.errors import CartritaError, ServingError
from cartrita_assets.local import system
from cartrita_assets.redaction import redact, write_private_file

INSTALL_HINT = (
    "Install Debian's PgBouncer (`apt-get install pgbouncer`; scripts/bootstrap.sh does it when "
    "run as root) or set CARTRITA_PGBOUNCER to the binary."
)


def pgbouncer_binary(configured: str = "") -> str:
    """The PgBouncer executable: ``configured``, else ``pgbouncer`` on PATH or in /usr/sbin.

    Raises:
        ServingError: none is installed (the message says how to install it).
    """
    for candidate in (configured, shutil.which("pgbouncer") or "", "/usr/sbin/pgbouncer"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServingError(f"PgBouncer is not installed here. {INSTALL_HINT}")


def ini_value(text: str) -> str:
    """``text`` as a PgBouncer ini value; a line break would start a new setting."""
    if any(c in text for c in "\r\n\0"):
        raise ServingError(f"{text!r} cannot be written to PgBouncer's configuration file.")
    return text


def auth_line(user: str, verifier: str) -> str:
    """One ``"user" "secret"`` line of PgBouncer's auth file (a ``"`` is doubled)."""
    if not verifier.startswith("SCRAM-SHA-256$"):
        raise ServingError(
            f"v2 stores no SCRAM verifier for role {user!r}: set its password again with "
            "password_encryption = 'scram-sha-256' (materialize restored_db)."
        )
    quoted = ini_value(user).replace('"', '""')
    return f'"{quoted}" "{verifier}"\n'


def role_verifier(admin: psycopg.Connection, role: str) -> str:
    """The SCRAM verifier v2 stores for ``role`` (read from ``pg_authid`` by the superuser)."""
    row = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    if row is None:
        raise ServingError(
            f"v2 has no role {role!r} (the application's, from v1's .env): materialize "
            "restored_db first."
        )
    return str(row[0] or "")


@dataclass
class LocalPooler:
    """One PgBouncer under ``base_dir`` listening on 127.0.0.1:``port`` for v2 on ``pg_port``.

    Args:
        base_dir: folder of ``pgbouncer.ini``, ``userlist.txt``, the pid file and the log.
        port: the pooler's port (the application's ``POSTGRES_PORT`` through the pooler).
        pg_port: v2 PostgreSQL's port on 127.0.0.1.
        binary: a PgBouncer executable; empty: Debian's.
        pool_size: server connections per database and user.
    """

    base_dir: Path
    port: int
    pg_port: int
    binary: str = ""
    pool_size: int = 20
    log: Callable[[str], None] = lambda _m: None

    @property
    def config_file(self) -> Path:
        return self.base_dir / "pgbouncer.ini"

    @property
    def auth_file(self) -> Path:
        return self.base_dir / "userlist.txt"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "pgbouncer.pid"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "pgbouncer.log"

    def config_text(self) -> str:
        """pgbouncer.ini: every database of v2, transaction pooling, SCRAM, loopback only."""
        return "\n".join([
            "[databases]",
            f"* = host=127.0.0.1 port={self.pg_port}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
            f"auth_file = {ini_value(str(self.auth_file.resolve()))}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 500",
            # drivers send these at startup; PgBouncer would refuse the login otherwise
            "ignore_startup_parameters = extra_float_digits,options",
            f"pidfile = {ini_value(str(self.pid_file.resolve()))}",
            f"logfile = {ini_value(str(self.log_file.resolve()))}",
            "",
        ])  # fmt: skip

    def configure(self, users: dict[str, str]) -> None:
        """Write the config and the auth file (0600, the server user's) for ``users``
        (role -> SCRAM verifier); a running pooler reloads them."""
        system.check_writable_dir(self.base_dir, "PgBouncer")
        system.ensure_traversable(self.base_dir, self.log)
        write_private_file(self.auth_file, "".join(auth_line(u, v) for u, v in users.items()))
        write_private_file(self.config_file, self.config_text())
        system.chown_to_server_user(self.base_dir)  # it writes its pid file and log there
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            self.log(f"PgBouncer (pid {pid}) reloaded its configuration and auth file")

    def ensure_running(self) -> None:
        """Start PgBouncer (as the server user when root) unless it runs; wait until it listens."""
        if self.pid() is not None:
            return
        if not system.port_is_free(self.port):
            raise ServingError(
                f"Port {self.port} on 127.0.0.1 is already in use by another process, so "
                "PgBouncer cannot start. Stop that process or set CARTRITA_V2_POOLER_PORT."
            )
        self.log_file.touch()
        system.chown_to_server_user(self.log_file)
        cmd = system.as_server_user([pgbouncer_binary(self.binary), "-d", str(self.config_file)])
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServingError(
                f"PgBouncer did not start (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-500:]}{self._log_tail()}"
            )
        try:
            system.wait_until(lambda: self.pid() is not None, 15, "PgBouncer to start")
        except CartritaError:
            raise ServingError(f"PgBouncer did not start.{self._log_tail()}") from None
        self.log(f"PgBouncer listening on 127.0.0.1:{self.port} (transaction pooling) for v2")

    def pid(self) -> int | None:
        """The running PgBouncer's pid, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if system.process_alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def stop(self) -> bool:
        """Stop PgBouncer (immediate shutdown); False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        system.wait_until(lambda: self.pid() is None, 15, "PgBouncer to stop")
        return True

    def settings(self, app: PostgresSettings) -> PostgresSettings:
        """``app``'s credentials and database, reached through the pooler."""
        return PostgresSettings(
            host="127.0.0.1", port=self.port, user=app.user, password=app.password,
            dbname=app.dbname,
        )  # fmt: skip

    def _log_tail(self) -> str:
        if not self.log_file.exists():
            return ""
        lines = self.log_file.read_text(errors="replace").splitlines()[-5:]
        return "\nPgBouncer log (last lines):\n" + "\n".join(lines) if lines else ""


def pooled_connect(settings: PostgresSettings, **kwargs: object) -> psycopg.Connection:
    """A connection through a transaction-mode pooler.

    ``prepare_threshold=None``: psycopg otherwise prepares a statement run 5 times under a name
    (``_pg3_0``) on one server connection, and the pooler sends the next transaction to another
    that has never heard of it (PgBouncer 1.18 does not track prepared statements).
    """
    try:
        return psycopg.connect(
            **settings.conninfo_kwargs(), prepare_threshold=None, autocommit=True,
            connect_timeout=10, application_name="cartrita-assets", **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
    except psycopg.OperationalError as exc:
        detail = redact(str(exc).strip(), [settings.password]).splitlines()[-1]
        raise ServingError(
            f"Cannot log in through the pooler at {settings.masked_dsn()}: {detail} (check that "
            "v2_pooler was materialized after the last restore)."
        ) from None
