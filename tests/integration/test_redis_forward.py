"""Redis through the forward assets: a Redis 7 v1 with worker queues arrives exactly in v2 by
either copy path, and a v2 older than v1 is refused before anything is written."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import pytest
import redis
from support.demo import running_demo, v1_source
from support.runs import check_results, failure_messages, materialize, materialized

from cartrita_assets import redis_copy
from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.definitions import build_definitions
from cartrita_assets.local.redis_servers import bundled_server, system_redis7
from cartrita_assets.redis_copy.client import client_for

pytestmark = pytest.mark.integration

FORWARD_REDIS = ("v1_backup", "k8s_secrets", "pgvector_cluster", "restored_db")


def _connect(settings):  # a Connect for redis_copy
    return lambda db: client_for(replace(settings, db=db))


def _state(settings) -> dict[tuple[int, bytes], str]:
    """Every key's full digest: values, stream counters, groups, consumers, pending owners and
    delivery counts."""
    return {(r.db, r.key): r.digest() for r in redis_copy.read_keyspace(_connect(settings))}


def _metadata(result, asset: str) -> dict:
    return next(
        e.event_specific_data.materialization.metadata
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key.to_user_string() == asset
    )


def test_demo_v1_redis_is_redis_7_with_worker_queues(demo_v1):
    if system_redis7() is None:
        pytest.skip("no Redis 7 on this machine (scripts/bootstrap.sh installs Debian's)")
    client = demo_v1.servers()[1].client()
    assert client.info("server")["redis_version"].startswith("7.")
    groups = client.xinfo_groups("stream:events")
    assert {g["name"] for g in groups} == {b"notifier", b"indexer"}
    assert all(g["pending"] > 0 for g in groups)
    assert client.xinfo_stream("stream:audit")["max-deleted-entry-id"] != b"0-0"
    empty = demo_v1.servers()[1].client(1)
    assert empty.xlen("stream:jobs:webhooks") == 0 and empty.xinfo_groups("stream:jobs:webhooks")


@pytest.mark.parametrize("path", ["dump", "logical"])
def test_queues_arrive_exactly_by_either_path(resources, instance, path):
    config = {"ops": {"restored_db": {"config": {"redis_copy_path": path}}}}
    result = materialize(resources, instance, *FORWARD_REDIS, run_config=config)

    assert result.success, failure_messages(result)
    assert check_results(result)["redis_keys_match_v1"] is True
    assert _metadata(result, "restored_db")["redis_copy_paths"].value == f"db0: {path}, db1: {path}"
    v1, v2 = resources["v1"].settings().redis, resources["v2"].redis()
    assert _state(v2) == _state(v1)  # independent of the check: every key, full stream state

    # one pending entry handed to another consumer in v2: the check fails
    first = client_for(v2).xpending_range("stream:events", "notifier", "-", "+", 1)[0]
    client_for(v2).xclaim("stream:events", "notifier", "someone-else", 0, [first["message_id"]])
    assert check_results(_checks_only(resources, instance))["redis_keys_match_v1"] is False


def _checks_only(resources, instance) -> dg.ExecuteInProcessResult:
    defs = build_definitions(resources)
    job = dg.define_asset_job(
        "checks", selection=dg.AssetSelection.checks_for_assets("restored_db")
    )
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    return merged.resolve_job_def("checks").execute_in_process(
        instance=instance, raise_on_error=False
    )


def test_v2_older_than_v1_is_refused_before_anything_is_written(
    resources, own_v2, instance, base_dir
):
    redis7 = system_redis7()
    if redis7 is None:
        pytest.skip("no Redis 7 on this machine (scripts/bootstrap.sh installs Debian's)")
    newer_v1 = base_dir / "demo-v1-valkey"
    with running_demo(newer_v1, redis_server=bundled_server().path) as demo:
        fixture_v2 = own_v2  # a fresh v2, not started: this one is to run Redis 7
        v2 = LocalV2Target(
            base_dir=fixture_v2.base_dir,
            pg_port=fixture_v2.pg_port,
            redis_port=fixture_v2.redis_port,
            durable=False,
            redis_server=redis7.path,
        )
        older = {**resources, "v1": v1_source(demo), "v2": v2}
        result = materialize(older, instance, *FORWARD_REDIS)

        assert not result.success
        assert "pgvector_cluster" not in materialized(result)
        message = " ".join(failure_messages(result))
        assert "Redis 7.0" in message and "valkey 9.1.2" in message
        assert "CARTRITA_V2_REDIS_SERVER" in message
        v2_client = client_for(v2.redis())
        assert v2_client.dbsize() == 0
        with pytest.raises(redis.ResponseError):
            client_for(v2.redis(1)).xinfo_stream("stream:jobs:webhooks")
