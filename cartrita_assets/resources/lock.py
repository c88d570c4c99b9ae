"""One migration at a time: forward and rollback runs share an exclusive lock.

The lock is an OS file lock held by the run's process for the whole run (the local environment
runs all steps in one process), so a crashed or killed run releases it with its process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import dagster as dg

from cartrita_assets.errors import MigrationLockedError

# lock path -> (run id, file descriptor) held by this process
_HELD: dict[str, tuple[str, int]] = {}


class MigrationLock(dg.ConfigurableResource):
    """The exclusive lock file shared by ``forward_migration_job`` and ``rollback_job``."""

    path: str = ".cartrita/locks/migration.lock"
    across_processes: bool = False
    """Also refuse while an earlier forward/rollback run is active in the Dagster instance (for
    environments whose runs execute in separate pods, where a file lock cannot reach)."""

    def hold(self, context: dg.AssetExecutionContext) -> None:
        """Take the lock for this run (idempotent within the run), or refuse clearly."""
        if self.across_processes:
            _refuse_if_earlier_run_active(context)
        path = Path(self.path).expanduser().resolve()
        key = str(path)
        held = _HELD.get(key)
        if held and held[0] == context.run_id:
            return
        if held:
            self._release_finished(context, key, held)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise MigrationLockedError(
                f"Another migration run is in progress ({holder}). Forward and rollback never run "
                "at the same time: wait for it to finish, or terminate it in the Dagster UI, then "
                "launch this job again."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{context.job_name} run {context.run_id}, pid {os.getpid()}".encode(), 0)
        _HELD[key] = (context.run_id, fd)
        context.log.info(f"Holding the migration lock {path} for run {context.run_id}")

    @staticmethod
    def _release_finished(
        context: dg.AssetExecutionContext, key: str, held: tuple[str, int]
    ) -> None:
        """This process holds the lock for an earlier run: release it if that run has ended."""
        run = context.instance.get_run_by_id(held[0])
        if run is not None and not run.is_finished:
            raise MigrationLockedError(
                f"Run {held[0]} of {run.job_name} is still in progress in this process. Forward "
                "and rollback never run at the same time: wait for it to finish."
            )
        os.close(held[1])
        del _HELD[key]


def release_run_lock(run_id: str) -> bool:
    """Release the migration lock a finished in-process run still holds; True if one was held.

    A run worker process releases the lock when it exits; code that executes several runs in one
    process (the CLI, tests, benchmarks) calls this after each run.
    """
    for key, (held_run, fd) in list(_HELD.items()):
        if held_run == run_id:
            os.close(fd)
            del _HELD[key]
            return True
    return False


MIGRATION_JOBS = ("forward_migration_job", "rollback_job")
ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _refuse_if_earlier_run_active(context: dg.AssetExecutionContext) -> None:
    """Refuse when another forward/rollback run started before this one is still active."""
    instance = context.instance
    mine = instance.get_run_record_by_id(context.run_id)
    if mine is None:
        return
    for job in MIGRATION_JOBS:
        for record in instance.get_run_records(dg.RunsFilter(job_name=job, statuses=ACTIVE)):
            other = record.dagster_run.run_id
            earlier = (record.create_timestamp, other) < (mine.create_timestamp, context.run_id)
            if other != context.run_id and earlier:
                raise MigrationLockedError(
                    f"Another migration run is in progress ({job} run {other}). Forward and "
                    "rollback never run at the same time: wait for it to finish, or terminate it "
                    "in the Dagster UI, then launch this job again."
                )
