"""The ``cartrita`` command as a user runs it, on a real v1 environment file."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from support.ports import free_port
from support.scratch import embedding_cache

from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.pg.connect import connect

pytestmark = pytest.mark.integration


def test_forward_from_a_v1_env_file_writes_a_summary(demo_v1, test_dir, base_dir):
    env_file = test_dir / "v1.env"
    shutil.copy(demo_v1.env_file, env_file)
    password = next(
        line.split("=", 1)[1] for line in env_file.read_text().splitlines()
        if line.startswith("POSTGRES_PASSWORD=")
    )  # fmt: skip
    env = {
        **os.environ,
        "CARTRITA_STATE_DIR": str(test_dir / "state"),
        "CARTRITA_V2_PG_PORT": str(free_port()),
        "CARTRITA_V2_REDIS_PORT": str(free_port()),
        "CARTRITA_EMBEDDING_CACHE": str(embedding_cache(base_dir)),
    }
    env.pop("DAGSTER_HOME", None)
    cartrita = str(Path(os.sys.executable).parent / "cartrita")
    try:
        args = ["forward", "--env-file", str(env_file), "--reports-dir", str(test_dir / "reports")]
        out = subprocess.run(
            [cartrita, *args], cwd=test_dir, env=env, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "Result: SUCCESS" in out.stdout
        # a person reads progress and the summary; the engine's step events need --verbose
        assert " - DEBUG - " not in out.stdout + out.stderr
        assert "restored_db" in out.stderr and " - INFO - " in out.stderr
        report = Path(out.stdout.split("Run summary written to ")[1].split()[0])
        summary = json.loads((report.parent / "summary.json").read_text())
        assert summary["success"] and len(summary["checks"]) == 20
        integration = Path(out.stdout.split("Integration report: ")[1].split()[0])
        assert integration.name == "report.md" and (integration.parent / "latency.svg").exists()
        # a warning (vectors_are_well_formed: the demo holds degenerate vectors) does not fail it
        assert all(c["passed"] or c["severity"] == "WARN" for c in summary["checks"])
        assert summary["materialized"]["v1_backup"]["v1_source"] == f"v1 from {env_file.resolve()}"
        assert password not in out.stdout + out.stderr
        assert (test_dir / "state" / "dagster_home" / "dagster.yaml").exists()
        assert not (test_dir / "state" / "demo-v1").exists()  # a real v1 file: no demo started
        env = {**env, "CARTRITA_V1_ENV_FILE": str(env_file)}
        for args, expected in ((["v2", "status"], "local v2 PostgreSQL on 127.0.0.1"),
                               (["v2", "connect"], ".env.v2"),
                               (["v2", "logs", "postgres", "--lines", "5"], "LOG:")):  # fmt: skip
            out = subprocess.run([cartrita, *args], cwd=test_dir, env=env, capture_output=True,
                                 text=True, timeout=120)  # fmt: skip
            assert out.returncode == 0 and expected in out.stdout, out.stderr
            assert password not in out.stdout + out.stderr
        # `cartrita test integration`: the table, exit 0; a broken v2 function: FAIL and exit 1
        test = [cartrita, "test", "integration", "--reports-dir", str(test_dir / "reports")]
        out = subprocess.run(test, cwd=test_dir, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "| vector | hybrid_search_combines_both | pass |" in out.stdout
        assert password not in out.stdout + out.stderr
        ports = {"pg_port": int(env["CARTRITA_V2_PG_PORT"]),
                 "redis_port": int(env["CARTRITA_V2_REDIS_PORT"])}  # fmt: skip
        v2 = LocalV2Target(base_dir=str(test_dir / "state" / "v2"), **ports)
        with connect(v2.admin("cartrita"), role="test") as conn:
            conn.execute("DROP FUNCTION hybrid_search_rrf(text, vector, integer, integer, text, "
                         "text, boolean)")  # fmt: skip
        out = subprocess.run(test, cwd=test_dir, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
        assert "| vector | hybrid_search_rrf_runs | FAIL |" in out.stdout
    finally:
        subprocess.run([cartrita, "servers", "stop"], cwd=test_dir, env=env, capture_output=True)


def test_commands_that_only_look_start_nothing(test_dir):
    """`v2 status`, `v2 connect` and `db status` on a fresh state folder: no server starts, no
    demo is seeded; `v2 connect` says what to run first instead of starting the demo v1."""
    pg_port, redis_port = free_port(), free_port()
    env = {**os.environ, "CARTRITA_STATE_DIR": str(test_dir / "state"),
           "CARTRITA_V2_PG_PORT": str(pg_port), "CARTRITA_V2_REDIS_PORT": str(redis_port),
           "DATABASE_URL": f"postgresql://u:p@127.0.0.1:{pg_port}/cartrita"}  # fmt: skip
    env.pop("CARTRITA_V1_ENV_FILE", None)
    cartrita = str(Path(os.sys.executable).parent / "cartrita")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([cartrita, *args], cwd=test_dir, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    status = run("v2", "status")
    assert status.returncode == 0 and "stopped" in status.stdout, status.stderr
    assert "v2 pooler (PgBouncer) on 127.0.0.1" in status.stdout
    assert "v2 read replica on 127.0.0.1" in status.stdout
    connect_out = run("v2", "connect")
    assert connect_out.returncode == 2, connect_out.stdout + connect_out.stderr
    assert "demo v1 has not been set up yet" in connect_out.stderr
    assert "cartrita forward" in connect_out.stderr and "Traceback" not in connect_out.stderr
    db_status = run("db", "status")
    assert db_status.returncode != 0 and "Traceback" not in db_status.stderr
    assert not (test_dir / "state" / "demo-v1").exists()
    assert not (test_dir / "state" / "v2").exists()
    for port in (pg_port, redis_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"something listens on {port}"
