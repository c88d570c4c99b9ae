"""Whether the latest backup started follow mode (read from v1_backup's recorded metadata)."""

from __future__ import annotations

import dagster as dg

from cartrita_assets.defs.facts import latest_metadata


def following(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> bool:
    """True when the latest v1_backup was taken in follow mode."""
    recorded = latest_metadata(context.instance, "v1_backup") or {}
    return bool(recorded.get("follow", False))
