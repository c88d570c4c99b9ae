"""When ``v2_health_checks_schedule`` runs v2's checks: its decision, without servers.

The schedule reads two facts (the v2 database the automations look at, and a run that writes v2
still in flight) and wraps :func:`health_check_decision`'s answer in a RunRequest or a SkipReason.
"""

from __future__ import annotations

from dataclasses import dataclass

DATABASE_TAG = "cartrita/database"


@dataclass(frozen=True)
class HealthCheckRun:
    """A run of every health check on ``database``."""

    database: str

    @property
    def tags(self) -> dict[str, str]:
        """The run's tags: the database it checks."""
        return {DATABASE_TAG: self.database}


def health_check_decision(
    database: str | None, no_database: str, in_flight: str | None
) -> HealthCheckRun | str:
    """The run to request, or why there is none.

    Args:
        database: the v2 database to check, or None (no restore yet, or rolled back).
        no_database: why there is no database (when ``database`` is None).
        in_flight: a queued or running run that writes v2 (``"<job> run <id> (<status>)"``), or
            None; its checks would read a database being written.
    """
    if database is None:
        return f"No health checks: {no_database}."
    if in_flight:
        return f"No health checks while {in_flight} is in flight."
    return HealthCheckRun(database)
