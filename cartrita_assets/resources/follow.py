"""Where follow mode keeps its ledger, the lag it accepts, and how v2 reaches v1."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from cartrita_assets.follow.lag import LagLimits


class FollowStore(dg.ConfigurableResource):
    """Follow mode's settings.

    Attributes:
        root: folder of the ledger (what follow mode created on v1 and v2).
        topology: ``local`` (v2 runs on this machine) or ``kubernetes`` (v2 runs in pods).
        v1_host_for_v2: the address v2 uses to reach v1; empty: v1's POSTGRES_HOST/REDIS host.
        reach_probe_timeout: kubernetes: seconds preflight waits for the pod that checks v2's
            pods reach v1 (image pull and scheduling included).
        max_lag_bytes, max_lag_seconds: what counts as small enough to cut over.
        max_retained_wal_bytes: WAL the slot may hold back on v1 before the lag check fails.
        freeze_below_bytes: how close v2 must be before the cutover freezes v1.
    """

    root: str = ".cartrita/follow"
    topology: str = "local"
    v1_host_for_v2: str = ""
    reach_probe_timeout: float = 60.0
    max_lag_bytes: int = 64 * 2**20
    max_lag_seconds: float = 30.0
    max_retained_wal_bytes: int = 10 * 2**30
    freeze_below_bytes: int = 2**20
    """The cutover waits (up to 5 min, v1 still writable) until v2 trails by less than this
    before freezing v1, so the downtime covers only the last changes."""

    def path(self) -> Path:
        return Path(self.root)

    def limits(self) -> LagLimits:
        return LagLimits(self.max_lag_bytes, self.max_lag_seconds, self.max_retained_wal_bytes)
