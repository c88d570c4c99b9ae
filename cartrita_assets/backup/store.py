"""Where backups live and which one is current: the backup folder as a Dagster resource."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.errors import PreflightError


class BackupStore(dg.ConfigurableResource):
    """The backup folder (0700) and the preflight's free-disk rule."""

    root: str = ".cartrita/backups"
    min_free_ratio: float = 2.0
    dump_jobs: int | None = None
    """Parallel pg_dump / pg_restore workers and hashing sessions; unset: one per core."""

    def path(self) -> Path:
        """The backup root as an absolute path."""
        return Path(self.root).expanduser().resolve()

    def load(self, backup_id: str) -> tuple[Path, Manifest]:
        """The folder and manifest of one backup, or a clear error when it is gone."""
        folder = self.path() / backup_id
        if not (folder / "manifest.json").exists():
            raise PreflightError(
                f"Backup {backup_id} is not in {self.path()} (moved or deleted). Materialize "
                "v1_backup to take a new one."
            )
        return folder, Manifest.load(folder)
