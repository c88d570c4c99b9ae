"""The JSON Lines backup file: header, one record per line, checked trailer; write/read/verify."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartrita_assets.errors import BackupIntegrityError
from cartrita_assets.redis_copy.backup_codec import _record_from, _record_line
from cartrita_assets.redis_copy.records import KeyRecord, _digest_of

BACKUP_FORMAT = "cartrita-redis-keyspace"
BACKUP_VERSION = 2  # 2: streams carry counters, groups and pending entries; DUMP payloads
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class BackupSummary:
    """What a backup file holds: keys per db, total keys, keys with a TTL, keyspace digest."""

    keys_per_db: dict[int, int]
    total_keys: int
    keys_with_ttl: int
    digest: str


class _Tally:
    def __init__(self) -> None:
        self.per_db: dict[int, int] = {}
        self.with_ttl = 0
        self.digests: list[str] = []

    def add(self, rec: KeyRecord) -> None:
        self.per_db[rec.db] = self.per_db.get(rec.db, 0) + 1
        self.with_ttl += rec.expire_at_ms is not None
        self.digests.append(rec.digest())

    def summary(self) -> BackupSummary:
        return BackupSummary(
            dict(sorted(self.per_db.items())),
            len(self.digests),
            self.with_ttl,
            _digest_of(self.digests),
        )


def write_backup(path: Path, records: Iterable[KeyRecord]) -> BackupSummary:
    """Stream records to a JSON Lines file created 0600, replaced atomically when complete.

    Line 1 is a header, then one record per line (bytes base64-encoded, zset scores as
    ``repr`` strings so ``inf`` survives), then a trailer with the key count and keyspace digest
    that :func:`read_backup` checks. On any error the partial file is removed.

    Args:
        path: destination file.
        records: the keys to write (e.g. :func:`read_keyspace`).

    Returns:
        Counts per db, total keys, keys with a TTL and the keyspace digest.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    tally = _Tally()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(json.dumps({"format": BACKUP_FORMAT, "version": BACKUP_VERSION}) + "\n")
            for rec in records:
                out.write(_record_line(rec))
                tally.add(rec)
            summary = tally.summary()
            trailer = {"end": True, "total_keys": summary.total_keys, "digest": summary.digest}
            out.write(json.dumps(trailer) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return summary


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_backup(path: Path) -> Iterator[KeyRecord]:
    """Yield the records of a file written by :func:`write_backup`.

    The trailer (key count and keyspace digest) is checked when the iterator is exhausted, so a
    truncated or edited file raises at the end; use :func:`verify_backup` to check a file
    before acting on it.

    Args:
        path: the backup file.

    Returns:
        An iterator of records in file order.

    Raises:
        BackupIntegrityError: bad header, malformed line, missing trailer or digest mismatch.
    """
    tally = _Tally()
    with path.open("r", encoding="ascii") as lines:
        _check_header(path, next(lines, ""))
        for number, line in enumerate(lines, start=2):
            obj = _parse_line(path, number, line)
            if obj.get("end") is True:
                _check_trailer(path, obj, tally.summary(), lines)
                return
            rec = _record_from(path, number, obj)
            tally.add(rec)
            yield rec
    raise BackupIntegrityError(f"Redis backup {path} has no trailer: the file is truncated.")


def verify_backup(path: Path) -> BackupSummary:
    """Read a whole backup file and check it against its own trailer.

    Args:
        path: the backup file.

    Returns:
        The same summary :func:`write_backup` returned for it.
    """
    tally = _Tally()
    for rec in read_backup(path):
        tally.add(rec)
    return tally.summary()


def _parse_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise BackupIntegrityError(f"Redis backup {path} line {number} is not a JSON object.")
    return obj


def _check_header(path: Path, line: str) -> None:
    obj = _parse_line(path, 1, line) if line else {}
    if obj.get("format") != BACKUP_FORMAT or obj.get("version") not in READABLE_VERSIONS:
        raise BackupIntegrityError(
            f"{path} is not a {BACKUP_FORMAT} file of version "
            f"{' or '.join(map(str, READABLE_VERSIONS))} (bad or missing header)."
        )


def _check_trailer(
    path: Path, trailer: dict[str, Any], seen: BackupSummary, rest: Iterator[str]
) -> None:
    if any(line.strip() for line in rest):
        raise BackupIntegrityError(f"Redis backup {path} has data after its trailer.")
    if trailer.get("total_keys") != seen.total_keys or trailer.get("digest") != seen.digest:
        raise BackupIntegrityError(
            f"Redis backup {path} does not match its trailer: it records "
            f"{trailer.get('total_keys')} keys, the file holds {seen.total_keys} keys with a "
            "different digest. The file was edited or damaged; take the backup again."
        )
