"""Which backups to keep: by count and by age, and never before a newer backup was verified.

The decision is a pure function of the backups present (newest first, each with its
verification state), so it is tested without servers; :func:`apply_retention` only removes what
it decided.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cartrita_assets.backup.manifest import MANIFEST_NAME, Manifest
from cartrita_assets.redaction import write_private_file

VERIFIED_NAME = "verified.json"  # beside manifest.json: the last restore test and its result


@dataclass(frozen=True)
class BackupEntry:
    """One backup folder as retention sees it."""

    backup_id: str
    created_at: datetime
    verified: bool | None  # True: restored and matched; False: failed; None: not tested yet
    bytes: int = 0


@dataclass(frozen=True)
class RetentionPlan:
    """What retention keeps and removes, and why."""

    remove: list[str]
    keep: list[str]
    reason: str


def list_backups(root: Path) -> list[BackupEntry]:
    """Every backup under ``root`` (folders holding a manifest), newest first."""
    if not root.is_dir():
        return []
    entries = []
    for folder in root.iterdir():
        if not (folder / MANIFEST_NAME).is_file():
            continue  # a folder without a manifest is never a backup (it is being written)
        manifest = Manifest.load(folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        created = datetime.fromisoformat(manifest.created_at)
        entries.append(BackupEntry(folder.name, created, verification(folder), size))
    return sorted(entries, key=lambda e: (e.created_at, e.backup_id), reverse=True)


def verification(folder: Path) -> bool | None:
    """The recorded result of the backup's last restore test, or None when never tested."""
    path = folder / VERIFIED_NAME
    if not path.is_file():
        return None
    return bool(json.loads(path.read_text()).get("passed"))


def record_verification(folder: Path, passed: bool, details: str) -> None:
    """Record a restore test's result beside the manifest (0600)."""
    record = {"passed": passed, "at": datetime.now(UTC).isoformat(), "details": details}
    write_private_file(folder / VERIFIED_NAME, json.dumps(record, indent=2) + "\n")


def plan_retention(
    entries: list[BackupEntry], keep: int, max_age_days: int, now: datetime
) -> RetentionPlan:
    """Decide which backups go.

    A backup goes when it is beyond the ``keep`` newest or older than ``max_age_days`` (0: no
    age limit), and only when a newer backup than it has been verified by a restore: the newest
    verified backup itself always stays, and nothing goes while no backup is verified.

    Args:
        entries: the backups, newest first.
        keep: how many of the newest to keep (at least 1).
        max_age_days: the age limit in days; 0 for none.
        now: the current time (timezone-aware).
    """
    keep = max(keep, 1)
    newest_verified = next((i for i, e in enumerate(entries) if e.verified), None)
    if newest_verified is None:
        held = [e.backup_id for e in entries]
        return RetentionPlan([], held, "nothing removed: no backup has been verified yet")
    limit = now - timedelta(days=max_age_days) if max_age_days > 0 else None
    remove = [
        e.backup_id
        for i, e in enumerate(entries)
        if i > newest_verified and (i >= keep or (limit is not None and e.created_at < limit))
    ]
    kept = [e.backup_id for e in entries if e.backup_id not in remove]
    why = (
        f"keep the {keep} newest"
        + (f" and none older than {max_age_days} days" if max_age_days > 0 else "")
        + f"; older than the newest verified backup ({entries[newest_verified].backup_id})"
    )
    return RetentionPlan(remove, kept, why)


def apply_retention(root: Path, plan: RetentionPlan) -> list[str]:
    """Remove the backups ``plan`` decided to remove; returns their ids.

    The manifest goes first, so a removal cut short leaves a folder that is no longer a backup
    rather than a backup with files missing.
    """
    removed = []
    for backup_id in plan.remove:
        folder = root / backup_id
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(backup_id)
    return removed


def over_policy(
    entries: list[BackupEntry], keep: int, max_age_days: int, now: datetime
) -> list[str]:
    """Backups present beyond the policy (more than ``keep``, or past the age limit), each with
    why; empty when the store is within it."""
    limit = now - timedelta(days=max_age_days) if max_age_days > 0 else None
    out = [f"{e.backup_id}: beyond the {max(keep, 1)} newest" for e in entries[max(keep, 1) :]]
    out += [
        f"{e.backup_id}: older than {max_age_days} days"
        for e in entries[: max(keep, 1)]
        if limit is not None and e.created_at < limit
    ]
    return out
