"""rollback_job in the local environment, after a forward run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support.demo import v1_source
from support.runs import check_results, failure_messages, materialized, run_job

from cartrita_assets import redis_copy
from cartrita_assets.demo.redis_seed import seed_redis
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for

pytestmark = pytest.mark.integration

CONFIRM = {"ops": {"v1_reinstated": {"config": {"confirm_overwrite_v1": True}}}}


@pytest.fixture
def after_forward(resources, instance, demo_v1, test_dir):
    """A user's v1 .env (pointing at the demo servers), a green forward run, then a cut-over."""
    env_file = test_dir / "app" / ".env"
    env_file.parent.mkdir()
    env_file.write_text(demo_v1.env_file.read_text())
    resources = {**resources, "v1": v1_source(demo_v1, env_file)}
    assert run_job(resources, instance).success
    env_file.write_bytes((env_file.parent / ".env.v2").read_bytes())  # cp .env.v2 .env
    return resources, env_file


def _v2_running(resources) -> bool:
    pg, rds = resources["v2"].servers()
    return pg.is_running() or rds.is_running()


def test_rollback_after_forward_verifies_v1_restores_env_and_stops_v2(after_forward, instance):
    resources, env_file = after_forward
    result = run_job(resources, instance, job="rollback_job")

    assert result.success, failure_messages(result)
    assert check_results(result) == {"v1_matches_backup": True}
    assert env_file.read_bytes() == (env_file.parent / ".env.v1").read_bytes()
    assert not _v2_running(resources)
    meta = next(
        e.event_specific_data.materialization.metadata
        for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
    )  # fmt: skip
    assert meta["v1_action"].value.startswith("none needed: v1 equals backup pre_migration_")
    assert "local v2 postgres" in meta["v2_stopped"].value


def test_rollback_refuses_to_overwrite_a_changed_v1_without_confirmation(after_forward, instance):
    resources, env_file = after_forward
    v1 = resources["v1"].settings().postgres
    with connect(v1, role="test") as conn:
        name_before = conn.execute("SELECT name FROM public.users WHERE id = 2").fetchone()[0]
        conn.execute("UPDATE public.users SET name = 'changed after backup' WHERE id = 2")
        original = conn.execute("SELECT count(*) FROM public.users").fetchone()[0]
    switched = env_file.read_bytes()
    try:
        refused = run_job(resources, instance, job="rollback_job")
        assert not refused.success
        message = " ".join(failure_messages(refused))
        assert "public.users" in message and "confirm_overwrite_v1: true" in message
        assert "v1_reinstated" not in materialized(refused)
        assert _v2_running(resources)  # nothing was changed
        assert env_file.read_bytes() == switched

        confirmed = run_job(resources, instance, job="rollback_job", run_config=CONFIRM)
        assert confirmed.success, failure_messages(confirmed)
        assert check_results(confirmed) == {"v1_matches_backup": True}
        with connect(v1, role="test") as conn:
            name = conn.execute("SELECT name FROM public.users WHERE id = 2").fetchone()[0]
            assert name == name_before
            assert conn.execute("SELECT count(*) FROM public.users").fetchone()[0] == original
        assert not _v2_running(resources)
        assert env_file.read_bytes() == (env_file.parent / ".env.v1").read_bytes()
    finally:
        with connect(v1, role="test") as conn:  # leave the shared demo as the seed made it
            conn.execute("UPDATE public.users SET name = %s WHERE id = 2", (name_before,))


def test_rollback_and_forward_share_the_lock(after_forward, instance):
    import fcntl
    import os

    resources, _ = after_forward
    fd = os.open(Path(resources["migration_lock"].path), os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"forward_migration_job run busy, pid 1")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        result = run_job(resources, instance, job="rollback_job")
    finally:
        os.close(fd)
    assert not result.success
    assert any("Another migration run is in progress" in m for m in failure_messages(result))
    assert _v2_running(resources)


def _redis_digests(settings) -> dict[tuple[int, bytes], str]:
    """Every key's full digest (stream groups, consumers and pending entries included)."""
    connect = lambda db: client_for(replace(settings, db=db))  # noqa: E731
    return {(r.db, r.key): r.digest() for r in redis_copy.read_keyspace(connect)}


def test_rollback_restores_v1_queues_with_groups_and_pending_entries(
    after_forward, instance, demo_v1
):
    resources, _ = after_forward
    v1 = resources["v1"].settings().redis
    before = _redis_digests(v1)
    client = client_for(v1)
    # after the backup, workers acknowledged entries and a group was removed on v1
    pending = client.xpending_range("stream:events", "notifier", "-", "+", 100)
    client.xack("stream:events", "notifier", *[p["message_id"] for p in pending])
    client.xgroup_destroy("stream:events", "indexer")
    try:
        refused = run_job(resources, instance, job="rollback_job")
        assert not refused.success
        assert "stream:events" in " ".join(failure_messages(refused))

        confirmed = run_job(resources, instance, job="rollback_job", run_config=CONFIRM)
        assert confirmed.success, failure_messages(confirmed)
        assert check_results(confirmed) == {"v1_matches_backup": True}
        assert _redis_digests(v1) == before
        restored = client.xpending_range("stream:events", "notifier", "-", "+", 100)
        assert [(p["message_id"], p["consumer"], p["times_delivered"]) for p in restored] == [
            (p["message_id"], p["consumer"], p["times_delivered"]) for p in pending
        ]
        assert {g["name"] for g in client.xinfo_groups("stream:events")} == {
            b"notifier",
            b"indexer",
        }
    finally:
        if _redis_digests(v1) != before:  # leave the shared demo as the seed made it
            client.flushall()
            seed_redis(client, demo_v1.scale, demo_v1.seed)
