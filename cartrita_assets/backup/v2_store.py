"""v2's backups while it serves: where they go, how many are kept, how one is found."""

from __future__ import annotations

from pathlib import Path

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.backup.retention import BackupEntry, list_backups
from cartrita_assets.backup.snapshot import Origin
from cartrita_assets.backup.store import BackupStore
from cartrita_assets.envfile import PostgresSettings, RedisSettings
from cartrita_assets.errors import PreflightError

V2_ASSET = "v2_backup"


class V2BackupStore(BackupStore):
    """v2's backup folder (0700) and its retention: the ``keep`` newest, none older than
    ``max_age_days`` (0: no age limit), and the oldest removed only after a newer one verified."""

    root: str = ".cartrita/v2-backups"
    keep: int = 7
    max_age_days: int = 30

    def load(self, backup_id: str) -> tuple[Path, Manifest]:
        """The folder and manifest of one v2 backup, or a clear error when there is none."""
        folder = self.path() / backup_id
        if "/" in backup_id or not (folder / "manifest.json").exists():
            raise PreflightError(
                f"There is no v2 backup {backup_id!r} in {self.path()}. `cartrita backups list` "
                f"shows the ids; materialize {V2_ASSET} to take a new one."
            )
        return folder, Manifest.load(folder)

    def entries(self) -> list[BackupEntry]:
        """Every v2 backup, newest first."""
        return list_backups(self.path())

    def newest(self) -> tuple[Path, Manifest]:
        """The newest v2 backup, or a clear error when there is none."""
        entries = self.entries()
        if not entries:
            raise PreflightError(
                f"There is no v2 backup in {self.path()} yet: materialize {V2_ASSET} (or wait "
                "for v2_backup_schedule)."
            )
        return self.load(entries[0].backup_id)


def v2_origin(postgres: PostgresSettings, redis: RedisSettings | None) -> Origin:
    """v2 as a backup source: its serving database (``postgres``) and its Redis."""
    return Origin(
        name="v2",
        postgres=postgres,
        redis=redis,
        asset=V2_ASSET,
        prefix="v2",
        redis_fix="Check that v2's Redis runs (`cartrita v2 status`).",
        dir_setting="CARTRITA_V2_BACKUP_DIR",
    )
