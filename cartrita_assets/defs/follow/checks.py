"""replication_lag_is_small: how far v2 trails v1, as numbers the UI plots over time."""

import dagster as dg

from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.follow.assets import replication_stream
from cartrita_assets.follow import ledger as ledgers
from cartrita_assets.follow.lag import measure, verdict
from cartrita_assets.follow.v1side import ROLE
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.resources.follow import FollowStore
from cartrita_assets.resources.v1 import V1Source


@dg.asset_check(asset=replication_stream, blocking=False)
def replication_lag_is_small(
    v1: V1Source, v2: V2Target, follow: FollowStore
) -> dg.AssetCheckResult:
    """v2 trails v1 by less than the set limits (PostgreSQL bytes and seconds, Redis offset) and
    the slot holds back less WAL on v1 than its limit."""
    ledger = ledgers.load(follow.path())
    if ledger is None or ledger.state != "following":
        state = ledger.state if ledger else "off"
        return dg.AssetCheckResult(passed=True, metadata={"follow_mode": state})
    settings = v1.settings(start_demo=False)
    with connect(settings.postgres, role=ROLE, read_only=True) as conn:
        v1_redis = client_for(settings.redis) if settings.redis and ledger.redis_replica else None
        v2_redis = client_for(v2.redis()) if v1_redis is not None else None
        lag = measure(conn, ledger.slot, v1_redis, v2_redis)
    problems = verdict(lag, follow.limits())
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**lag.metadata(), "problems": "; ".join(problems) or "none"},
    )
