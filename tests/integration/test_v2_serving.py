"""v2's serving tier on real servers: the application through a real PgBouncer (Debian's 1.18, in
transaction mode), and a real streaming replica. One forward run feeds the whole module."""

from __future__ import annotations

import dataclasses
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql
from support.ports import free_port
from support.runs import check_results, local_resources, materialized, run_job

from cartrita_assets.defs.serving.checks import replica_serves_primary_results
from cartrita_assets.envfile import V1Settings, read_env_file
from cartrita_assets.envfile.cutover import cutover_file
from cartrita_assets.pg.connect import connect
from cartrita_assets.resources.serving import ServingResource
from cartrita_assets.serving.pooler import pgbouncer_binary, pooled_connect
from cartrita_assets.serving.probe import SEARCHES, sample_queries, search_results
from cartrita_assets.serving.replica import HEARTBEAT_TABLE, SLOT

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_v2_serving")]

try:
    pgbouncer_binary()
    NO_PGBOUNCER = ""
except Exception as exc:  # the reason is shown in the skip
    NO_PGBOUNCER = str(exc)
needs_pgbouncer = pytest.mark.skipif(bool(NO_PGBOUNCER), reason=NO_PGBOUNCER)


@dataclass
class Served:
    """The module's forward-migrated v2, its resources and Dagster instance."""

    resources: dict[str, Any]
    instance: dg.DagsterInstance
    database: str

    @property
    def serving(self) -> ServingResource:
        return self.resources["serving"]

    def app(self) -> Any:
        """The application role's settings on v2 (directly)."""
        app = self.resources["v1"].settings().postgres
        admin = self.resources["v2"].admin(self.database)
        return dataclasses.replace(admin, user=app.user, password=app.password)


@pytest.fixture(scope="module")
def served(demo_v1: Any, session_v2: Any, base_dir: Path) -> Iterator[Served]:
    v2 = session_v2.reset()
    folder = base_dir / "serving"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    folder.chmod(0o755)
    resources = local_resources(demo_v1, v2, folder, base_dir)
    resources["serving"] = ServingResource(
        pooler_port=free_port(), replica_port=free_port(), durable=False
    )
    instance = dg.DagsterInstance.ephemeral()
    result = run_job(resources, instance)
    assert result.success, "the forward run this module serves from failed"
    database = resources["v1"].settings().postgres.dbname
    try:
        yield Served(resources, instance, database)
    finally:
        resources["serving"].pooler(v2).stop()
        resources["serving"].replica(v2).stop()
        with connect(v2.admin(), role="test") as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (SLOT,),
            )
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(HEARTBEAT_TABLE)))


def _check_meta(result: dg.ExecuteInProcessResult, name: str) -> dict[str, Any]:
    for e in result.all_events:
        data = e.event_specific_data
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and data.check_name == name:  # type: ignore[union-attr]
            return {k: v.value for k, v in data.metadata.items()}  # type: ignore[union-attr]
    raise AssertionError(f"{name} was not evaluated")


@pytest.fixture(scope="module")
def pooler_run(served: Served) -> dg.ExecuteInProcessResult:
    if NO_PGBOUNCER:
        pytest.skip(NO_PGBOUNCER)
    return run_job(served.resources, served.instance, "v2_pooler_job")


@needs_pgbouncer
def test_application_role_searches_through_the_pooler(
    served: Served, pooler_run: dg.ExecuteInProcessResult
) -> None:
    assert pooler_run.success
    assert materialized(pooler_run) == {"v2_pooler"}
    assert check_results(pooler_run) == {"pooler_serves_application_role": True}
    meta = _check_meta(pooler_run, "pooler_serves_application_role")
    assert meta["logged_in_as"] == served.app().user
    assert meta["differences"] == "none"
    print(f"p50 similarity_search: pooled {meta['p50_ms_pooled']} ms, "
          f"direct {meta['p50_ms_direct']} ms")  # fmt: skip

    pooler = served.serving.pooler(served.resources["v2"])
    # the auth file holds v2's own verifier for the role, never the password; both files 0600
    with connect(served.resources["v2"].admin(), role="test") as conn:
        (verifier,) = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (served.app().user,)
        ).fetchone()
    auth = pooler.auth_file.read_text()
    assert verifier in auth and served.app().password not in auth
    for path in (pooler.auth_file, pooler.config_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert served.app().password not in path.read_text()
    cmdline = Path(f"/proc/{pooler.pid()}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert "pgbouncer" in cmdline and served.app().password not in cmdline


@needs_pgbouncer
def test_named_prepared_statements_fail_in_transaction_mode_and_the_pooled_setting_works(
    served: Served, pooler_run: dg.ExecuteInProcessResult
) -> None:
    pooled = served.serving.pooler(served.resources["v2"]).settings(served.app())
    statement = SEARCHES["similarity_search"]
    with psycopg.connect(**pooled.conninfo_kwargs(), autocommit=True) as setup:
        query = sample_queries(setup, 1)[0].params()

    def reuse_after_other_client_holds_the_server(client: psycopg.Connection) -> None:
        for _ in range(6):  # past psycopg's prepare_threshold (5): now prepared as _pg3_N
            client.execute(statement, query).fetchall()
        with psycopg.connect(**pooled.conninfo_kwargs()) as other:
            other.execute("SELECT 1")  # holds the server connection the statement lives on
            client.execute(statement, query).fetchall()

    with psycopg.connect(**pooled.conninfo_kwargs(), autocommit=True) as default:
        with pytest.raises(psycopg.errors.InvalidSqlStatementName, match=r"_pg3_\d+"):
            reuse_after_other_client_holds_the_server(default)
    with pooled_connect(pooled) as fixed:
        reuse_after_other_client_holds_the_server(fixed)


@needs_pgbouncer
def test_pooler_check_fails_when_the_auth_file_no_longer_matches(
    served: Served, pooler_run: dg.ExecuteInProcessResult
) -> None:
    v2 = served.resources["v2"]
    pooler = served.serving.pooler(v2)
    user = served.app().user
    other = "SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "=:" + "A" * 43 + "="
    try:
        pooler.configure({user: other})  # as if the role's password changed in v2
        job = dg.define_asset_job(
            "pooler_check_only", selection=dg.AssetSelection.checks_for_assets("v2_pooler")
        )
        from cartrita_assets.definitions import build_definitions

        defs = dg.Definitions.merge(build_definitions(served.resources), dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def("pooler_check_only").execute_in_process(
            instance=served.instance, raise_on_error=False
        )
        assert check_results(result) == {"pooler_serves_application_role": False}
        error = _check_meta(result, "pooler_serves_application_role")["error"]
        assert "through the pooler" in error and served.app().password not in error
    finally:
        rerun = run_job(served.resources, served.instance, "v2_pooler_job")
        assert check_results(rerun) == {"pooler_serves_application_role": True}


@needs_pgbouncer
def test_via_pooler_points_env_v2_at_the_pooler(
    served: Served, pooler_run: dg.ExecuteInProcessResult
) -> None:
    config = {"ops": {"v2_pooler": {"config": {"via_pooler": True}}}}
    result = run_job(served.resources, served.instance, "v2_pooler_job", run_config=config)
    assert result.success
    env_file = served.resources["v1"].env_path()
    env_v2 = cutover_file(env_file, "v2")
    assert stat.S_IMODE(env_v2.stat().st_mode) == 0o600
    app = V1Settings.from_env_file(read_env_file(env_v2)).postgres
    pooler = served.serving.pooler(served.resources["v2"])
    assert (app.host, app.port) == ("127.0.0.1", pooler.port)
    # the application, configured from .env.v2 alone, searches through the pooler
    with pooled_connect(app) as conn:
        results = search_results(conn, sample_queries(conn))
    assert all(ids for runs in results.values() for ids in runs)
    assert cutover_file(env_file, "v1").read_bytes() == env_file.read_bytes()


def test_replica_receives_a_primary_write_and_serves_the_same_results(served: Served) -> None:
    result = run_job(served.resources, served.instance, "v2_read_replica_job")
    assert result.success
    assert check_results(result) == {"replica_serves_primary_results": True}
    meta = _check_meta(result, "replica_serves_primary_results")
    assert meta["differences"] == "none" and meta["replica_is_standby"] is True
    visible, replay = meta["write_visible_after_ms"], meta["replay_lag_ms"]
    print(f"replica lag: {meta['lag_bytes']} bytes, visible after {visible} ms, replay {replay} ms")

    v2 = served.resources["v2"]
    replica = served.serving.replica(v2)
    standby_app = dataclasses.replace(served.app(), port=replica.port)
    with connect(v2.admin(served.database), role="test") as primary:
        query = sample_queries(primary, 1)[0]
        primary.execute(
            "SELECT upsert_embedding('serving_probe', 'row-1', %s, %s::vector, %s, '{}')",
            ("a row written on the primary after the replica started", query.vector, query.model),
        )
        expected = search_results(primary, [query])
    assert any(len(ids) for ids in expected["similarity_search"])
    with connect(standby_app, role="test") as standby:
        # a deadline in time, not in polls: the test server commits with synchronous_commit off,
        # so the WAL may reach the replica only after the WAL writer's next round (~200 ms)
        rows, deadline = None, time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = standby.execute(
                "SELECT count(*) FROM embeddings WHERE source_table = 'serving_probe'"
            ).fetchone()
            if rows and rows[0] == 1:
                break
            time.sleep(0.01)
        assert rows == (1,), "the primary's write did not reach the replica within 30 s"
        assert search_results(standby, [query]) == expected
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute("DELETE FROM embeddings WHERE source_table = 'serving_probe'")


def test_replica_check_fails_when_the_replica_is_down(served: Served) -> None:
    v2 = served.resources["v2"]
    replica = served.serving.replica(v2)
    if not replica.is_running():
        run_job(served.resources, served.instance, "v2_read_replica_job")
    replica.stop()
    job = dg.define_asset_job(
        "replica_check_only", selection=dg.AssetSelection.checks(replica_serves_primary_results)
    )
    from cartrita_assets.definitions import build_definitions

    defs = dg.Definitions.merge(build_definitions(served.resources), dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("replica_check_only").execute_in_process(
        instance=served.instance, raise_on_error=False
    )
    assert check_results(result) == {"replica_serves_primary_results": False}
    assert "read replica" in _check_meta(result, "replica_serves_primary_results")["error"]
    # materializing again restarts it from its own data (no new base backup)
    again = run_job(served.resources, served.instance, "v2_read_replica_job")
    assert check_results(again) == {"replica_serves_primary_results": True}
    assert _check_meta(again, "replica_serves_primary_results")["differences"] == "none"


def test_the_rollback_stops_the_local_pooler_and_replica_before_v2(served: Served) -> None:
    """`v1_reinstated` stops them with ``ServingResource.stop_local`` (v2 itself is this
    session's shared server, so only that call runs here, not the whole rollback)."""
    v2 = served.resources["v2"]
    if NO_PGBOUNCER:
        pytest.skip(NO_PGBOUNCER)
    if not served.serving.pooler(v2).is_running():
        run_job(served.resources, served.instance, "v2_pooler_job")
    if not served.serving.replica(v2).is_running():
        run_job(served.resources, served.instance, "v2_read_replica_job")
    assert served.serving.stop_local(v2) == ["v2 pooler (PgBouncer)", "v2 read replica"]
    assert not served.serving.pooler(v2).is_running()
    assert not served.serving.replica(v2).is_running()
    assert served.serving.stop_local(v2) == []  # nothing left running
