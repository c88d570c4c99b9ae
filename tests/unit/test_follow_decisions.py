"""Follow mode's pure decisions: preflight messages, the lag verdict, the cutover's refusals,
the switch-point comparison, the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartrita_assets.follow import ledger as ledgers
from cartrita_assets.follow.cutover import refuse_reasons
from cartrita_assets.follow.lag import Lag, LagLimits, growing, verdict
from cartrita_assets.follow.preflight import V1Facts, problems
from cartrita_assets.follow.verify import compare_tables
from cartrita_assets.pg.inventory import TableState

READY = V1Facts(wal_level="logical", free_slots=3, free_senders=3, can_replicate=True,
                host="127.0.0.1")  # fmt: skip


def test_a_ready_v1_has_no_problem() -> None:
    assert problems(READY, full_identity_consent=False, topology="local") == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"wal_level": "replica"}, ["wal_level = replica", "wal_level=logical", "Compose"]),
        ({"free_slots": 0}, ["no free replication slot", "max_replication_slots"]),
        ({"free_senders": 0}, ["no free WAL sender", "max_wal_senders"]),
        ({"can_replicate": False}, ["may not replicate", "ALTER ROLE"]),
        ({"keyless_tables": ["public.logs"]}, ["public.logs", "--replica-identity-full"]),
        ({"large_objects": 2}, ["2 large object", "bytea"]),
    ],
)
def test_each_problem_is_one_message_naming_the_fix(change: dict, words: list[str]) -> None:
    facts = V1Facts(**{**READY.__dict__, **change})
    found = problems(facts, full_identity_consent=False, topology="local")
    assert len(found) == 1
    for word in words:
        assert word in found[0]


def test_keyless_tables_pass_with_consent_only() -> None:
    facts = V1Facts(**{**READY.__dict__, "keyless_tables": ["public.a", "public.b"]})
    assert problems(facts, full_identity_consent=True, topology="local") == []
    assert "2 v1 table(s)" in problems(facts, full_identity_consent=False, topology="local")[0]


def test_a_loopback_v1_is_unreachable_from_pods_only() -> None:
    assert problems(READY, full_identity_consent=False, topology="local") == []
    found = problems(READY, full_identity_consent=False, topology="kubernetes")
    assert len(found) == 1 and "v2 pod cannot reach" in found[0]


LIMITS = LagLimits(max_bytes=1000, max_seconds=5, max_retained_wal_bytes=10_000)


def test_lag_verdict() -> None:
    assert verdict(Lag(10, 0.1, 100, 0, 0, "up"), LIMITS) == []
    assert verdict(Lag(2000, 0.1, 100), LIMITS) == ["PostgreSQL lag 2000 bytes > 1000"]
    assert "6.0s > 5s" in verdict(Lag(10, 6.0, 100), LIMITS)[0]
    assert "v1's disk fills" in verdict(Lag(10, 0.1, 20_000), LIMITS)[0]
    assert "not streaming" in verdict(Lag(10, None, 100), LIMITS)[0]
    assert verdict(Lag(10, 0.1, 100, 5000, 0, "up"), LIMITS) == ["Redis lag 5000 bytes > 1000"]
    assert "link to v1 is down" in verdict(Lag(10, 0.1, 100, 0, 0, "down"), LIMITS)[0]


def test_growing_lag() -> None:
    assert not growing(None, Lag(10, 0, 0))
    assert growing(Lag(10, 0, 0), Lag(11, 0, 0))
    assert not growing(Lag(10, 0, 0), Lag(10, 0, 0))
    assert growing(Lag(10, 0, 0, 1), Lag(10, 0, 0, 2))


def _ledger(**kw: object) -> ledgers.Ledger:
    base = dict(database="cartrita", slot="s", publication="p", subscription="sub",
                catalog_fingerprint="abc")  # fmt: skip
    return ledgers.Ledger(**{**base, **kw})  # type: ignore[arg-type]


def test_cutover_refuses_ddl_and_lag_before_freezing() -> None:
    small = Lag(0, 0.0, 0)
    assert refuse_reasons(_ledger(), small, LIMITS, "abc") == []
    ddl = refuse_reasons(_ledger(), small, LIMITS, "changed")
    assert len(ddl) == 1 and "table definitions changed" in ddl[0]
    assert refuse_reasons(_ledger(), Lag(5000, 0.0, 0), LIMITS, "abc") == [
        "PostgreSQL lag 5000 bytes > 1000"
    ]
    assert "not streaming" in refuse_reasons(_ledger(subscription=""), small, LIMITS, "abc")[0]


def test_switch_point_comparison_names_each_table() -> None:
    v1 = {"public.a": TableState(2, "h1"), "public.b": TableState(3, "h2"),
          "public.c": TableState(1, "h3")}  # fmt: skip
    v2 = {"public.a": TableState(2, "h1"), "public.b": TableState(3, "XX")}
    assert compare_tables(v1, v2) == [
        "public.b: v1 3 rows, v2 3 rows, content differs",
        "public.c: missing in v2",
    ]
    assert compare_tables(v1, dict(v1)) == []


def test_ledger_round_trip_is_private(tmp_path: Path) -> None:
    root = tmp_path / "follow"
    assert ledgers.load(root) is None
    ledger = _ledger(replica_identities=["public.logs"], read_only=True)
    ledgers.save(root, ledger)
    assert ledgers.load(root) == ledger
    assert ledgers.ledger_path(root).stat().st_mode & 0o077 == 0
    objects = ledger.v1_objects()
    assert "replication slot s" in objects and "REPLICA IDENTITY FULL on public.logs" in objects
    cut = _ledger(state="cut over", read_only=True)
    assert cut.v1_objects() == ["default_transaction_read_only = on for database cartrita"]
    ledgers.remove(root)
    assert ledgers.load(root) is None


def test_lag_sensor_skips_when_nothing_follows_and_warns_on_growth(tmp_path: Path) -> None:
    import dagster as dg

    from cartrita_assets.defs.follow.sensors import lag_warnings, replication_lag_sensor
    from cartrita_assets.resources.follow import FollowStore
    from cartrita_assets.resources.v1 import V1Source

    follow = FollowStore(root=str(tmp_path / "follow"), max_lag_bytes=1000)
    context = dg.build_sensor_context(resources={"v1": V1Source(), "follow": follow})
    result = replication_lag_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "not streaming" in (result.skip_message or "")
    assert lag_warnings(None, Lag(10, 0.0, 0), follow) == []
    assert lag_warnings(Lag(10, 0.0, 0), Lag(20, 0.0, 0), follow) == [
        "PostgreSQL lag grew from 10 to 20 bytes"
    ]
    assert lag_warnings(None, Lag(5000, 0.0, 0), follow) == ["PostgreSQL lag 5000 bytes > 1000"]


def test_full_identity_consent_is_implied_only_for_the_embedded_demo():
    from cartrita_assets.defs.follow.begin import BackupConfig, full_identity_consent

    demo, env_file = {"kind": "demo"}, {"kind": "env-file"}
    assert full_identity_consent(BackupConfig(follow=True), demo)[0] is True
    assert full_identity_consent(BackupConfig(follow=True), env_file) == (False, "not given")
    given = BackupConfig(follow=True, replica_identity_full=True)
    assert full_identity_consent(given, env_file)[0] is True
