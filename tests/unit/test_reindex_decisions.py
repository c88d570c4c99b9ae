"""The re-index sensors' decisions (when to re-embed, when to rebuild an index), without servers."""

import json

import dagster as dg
import pytest

from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.defs.vectors.sensors import index_volume_sensor, stale_embeddings_sensor
from cartrita_assets.vectors.changes import PendingChanges
from cartrita_assets.vectors.reindex import (
    ModelIndex,
    StaleRun,
    nothing_changed,
    read_acted,
    read_stale_cursor,
    rebuild_plan,
    stale_run,
    within,
)

SOURCES: list[dict[str, object]] = [
    {"table": "notes", "schema_name": "public"},
    {"table": "docs", "schema_name": "kb"},
]


def _pending(ids: dict[str, list[str]] | None, **kw: int) -> PendingChanges:
    return PendingChanges(after=1, watermark=9, rows=3, first_id=4, last_id=6, ids=ids, **kw)


def test_stale_run_names_the_changed_ids_of_embedded_tables_only() -> None:
    run = stale_run(_pending({"notes": ["1", "2"], "kb.docs": ["7"], "gone": ["3"]}), SOURCES)
    assert run == StaleRun({"notes": ["1", "2"], "kb.docs": ["7"]}, "notes: 2, kb.docs: 1")


def test_stale_run_without_known_sources_keeps_every_table() -> None:
    run = stale_run(_pending({"gone": ["3"]}), None)
    assert run == StaleRun({"gone": ["3"]}, "gone: 1")


def test_stale_run_compares_every_row_when_too_many_ids() -> None:
    run = stale_run(_pending(None, distinct=9000), SOURCES)
    assert run == StaleRun(None, "9000 changed rows: every row compared")


def test_stale_run_skips_changes_of_tables_no_longer_embedded() -> None:
    reason = stale_run(_pending({"gone": ["3"]}), SOURCES)
    assert reason == (
        "3 changes (ids 4-6) are all of tables embeddings_index no longer embeds (gone)"
    )


def test_nothing_changed_mentions_changes_waiting_behind_an_open_transaction() -> None:
    idle = PendingChanges(after=1, watermark=1, rows=0, first_id=None, last_id=None, waiting=2)
    assert nothing_changed(idle, "change id 5") == (
        "no source row changed since change id 5; 2 newer changes wait for an older "
        "transaction still running"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, (0, None)), ('{"after_xact": 12, "last_id": 4}', (12, 4)), ("not json", (0, None))],
)
def test_stale_cursor_reads_back_or_starts_over(raw, expected) -> None:
    assert read_stale_cursor(raw) == expected


def test_acted_cursor_reads_back_or_starts_over() -> None:
    assert read_acted(json.dumps({"m": {"rows": 3, "kind": "hnsw"}})) == {
        "m": {"rows": 3, "kind": "hnsw"}
    }
    assert read_acted("[1]") == {} and read_acted("{") == {} and read_acted(None) == {}


def test_within_is_a_factor_two_either_way() -> None:
    assert within(100, 50) and within(25, 50) and not within(101, 50) and not within(24, 50)


def test_rebuild_when_the_rule_picks_another_kind() -> None:
    plan = rebuild_plan([ModelIndex("m", "exact", 10, 12, "hnsw")], {})
    assert plan.rebuild == {"m": "the rule now picks hnsw instead of exact"}
    assert plan.cursor == {"m": {"rows": 12, "kind": "hnsw"}}


def test_rebuild_when_rows_moved_more_than_twice_from_the_build() -> None:
    plan = rebuild_plan([ModelIndex("m", "hnsw", 100, 250, "hnsw")], {})
    assert plan.rebuild == {"m": "250 rows moved more than 2x from 100 at its build"}


def test_no_rebuild_within_drift_or_for_an_exact_index() -> None:
    plan = rebuild_plan(
        [ModelIndex("a", "hnsw", 100, 150, "hnsw"), ModelIndex("b", "exact", 10, 90, "exact")], {}
    )
    assert plan.rebuild == {} and plan.cursor == {} and len(plan.fine) == 2
    assert (
        plan.fine[0] == "a: 150 rows, hnsw (built on 100), within 2x and the rule still picks hnsw"
    )


def test_a_requested_rebuild_is_not_requested_again() -> None:
    acted = {"m": {"rows": 240, "kind": "hnsw"}}
    plan = rebuild_plan([ModelIndex("m", "hnsw", 100, 250, "hnsw")], acted)
    assert plan.rebuild == {} and plan.cursor == acted
    assert plan.fine == ["m: 250 rows, rebuild already requested at 240"]


def test_the_sensors_skip_without_a_restored_database(tmp_path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    v2 = LocalV2Target(base_dir=str(tmp_path / "v2"), pg_port=1, redis_port=1)
    context = dg.build_sensor_context(instance=instance, resources={"v2": v2})
    for sensor in (stale_embeddings_sensor, index_volume_sensor):
        skip = sensor(context)
        assert isinstance(skip, dg.SkipReason) and "no restored database yet" in skip.skip_message
