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
    database: str | None, no_database: str, in_flight: str | None, what: str = "health checks"
) -> HealthCheckRun | str:
    """The run to request, or why there is none. Every scheduled run that reads the serving v2
    decides this way (``what`` names it in the skip reason: health checks, a v2 backup).

    Args:
        database: the v2 database to read, or None (no restore yet, or rolled back).
        no_database: why there is no database (when ``database`` is None).
        in_flight: a queued or running run that writes v2 (``"<job> run <id> (<status>)"``), or
            None; the run would read a database being written.
        what: the run, as the skip reason names it.
    """
    if database is None:
        return f"No {what}: {no_database}."
    if in_flight:
        return f"No {what} while {in_flight} is in flight."
    return HealthCheckRun(database)
