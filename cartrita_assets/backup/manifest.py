"""The backup manifest: everything v1 held at the snapshot, so v2 (or a rolled-back v1) can be
checked against it. Stored as ``manifest.json`` (0600) beside the dump.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cartrita_assets.pg.inventory import SequenceState, TableState
from cartrita_assets.pg.tools import CopyRows
from cartrita_assets.redaction import write_private_file

MANIFEST_NAME = "manifest.json"
DUMP_NAME = "postgres.dump"  # a pg_dump directory-format archive
REDIS_NAME = "redis.jsonl"


@dataclass
class PostgresPart:
    """What the backed-up PostgreSQL database (v1's, or v2's) held at the snapshot."""

    server_version: str
    major: int
    database: str
    owner: str
    encoding: str
    collate: str
    size_bytes: int
    extensions: dict[str, dict[str, str]]
    roles: dict[str, dict[str, bool]]
    tables: dict[str, TableState]
    sequences: dict[str, SequenceState]
    snapshot: str
    pg_dump_version: str
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    # the snapshot's xmin horizon (64-bit xid); absent in manifests written before it was recorded
    snapshot_xmin: int | None = None
    # how the table hashes were computed (inventory.HASH_METHODS); manifests written before the
    # binary hash lack it and hashed the rows' text
    hash_method: str = "text"


@dataclass
class RedisPart:
    """What the backed-up Redis (v1's, or v2's) held when it was read."""

    server_version: str
    keys_per_db: dict[int, int]
    keys_with_ttl: int
    digest: str
    sha256: str


@dataclass
class Manifest:
    """The whole manifest of one backup."""

    backup_id: str
    created_at: str
    source: dict[str, str]
    postgres: PostgresPart
    redis: RedisPart | None

    def save(self, folder: Path) -> Path:
        """Write ``manifest.json`` (0600) into ``folder``."""
        text = json.dumps(asdict(self), indent=2, sort_keys=True)
        return write_private_file(folder / MANIFEST_NAME, text + "\n")

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        """Read ``manifest.json`` from ``folder``."""
        data = json.loads((folder / MANIFEST_NAME).read_text())
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        pg = dict(data["postgres"])
        pg["tables"] = {k: TableState(**v) for k, v in pg["tables"].items()}
        pg["sequences"] = {k: SequenceState(**v) for k, v in pg["sequences"].items()}
        redis_part = data.get("redis")
        if redis_part:
            redis_part = dict(redis_part)
            redis_part["keys_per_db"] = {int(k): v for k, v in redis_part["keys_per_db"].items()}
        return cls(
            backup_id=data["backup_id"],
            created_at=data["created_at"],
            source=data["source"],
            postgres=PostgresPart(**pg),
            redis=RedisPart(**redis_part) if redis_part else None,
        )


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: list[Path]) -> list[str]:
    """sha256 of each file, one thread per core (hashlib releases the GIL while it hashes)."""
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return list(pool.map(sha256_file, paths))


@dataclass(frozen=True)
class FileFacts:
    """What one read of a backup file learns: its sha256 and, read as a directory-format data
    file, its rows."""

    sha256: str
    copy_rows: int


def file_facts(path: Path) -> FileFacts:
    """sha256 and COPY rows (:class:`~cartrita_assets.pg.tools.CopyRows`) of a file, in one
    read."""
    digest, rows = hashlib.sha256(), CopyRows()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            rows.update(chunk)
    return FileFacts(digest.hexdigest(), rows.rows())


def checksum_tree(folder: Path, root: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, keyed by path relative to ``root``."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {str(p.relative_to(root)): d for p, d in zip(files, sha256_files(files), strict=True)}


class EarlyChecksums:
    """The sha256 of every file under a folder while a writer is still filling it: ``done(path)``
    hands over a file the writer has finished (it is hashed in the background at once),
    ``tree()`` returns what :func:`checksum_tree` would, hashing only the files not handed over
    or changed since they were hashed (size or modification time)."""

    def __init__(self, folder: Path, root: Path) -> None:
        self.folder, self.root = folder, root
        self.sums: dict[Path, tuple[str, int, int]] = {}
        self.pool = ThreadPoolExecutor(max_workers=1)

    def done(self, path: Path) -> None:
        self.pool.submit(self._hash, path)  # a file that fails here is hashed again in tree()

    def _hash(self, path: Path) -> None:
        before = path.stat()
        digest = sha256_file(path)
        self.sums[path] = (digest, before.st_size, before.st_mtime_ns)

    def close(self) -> None:
        """Stop hashing (a failed writer): the files handed over are dropped."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def tree(self) -> dict[str, str]:
        self.pool.shutdown(wait=True)
        files = [p for p in sorted(self.folder.rglob("*")) if p.is_file()]
        fresh = []
        for path in files:
            known, stat = self.sums.get(path), path.stat()
            if known is None or (known[1], known[2]) != (stat.st_size, stat.st_mtime_ns):
                fresh.append(path)
        digests = {p: self.sums[p][0] for p in files if p not in fresh}
        digests.update(zip(fresh, sha256_files(fresh), strict=True))
        return {str(p.relative_to(self.root)): digests[p] for p in files}


def verify_files(folder: Path, manifest: Manifest) -> list[str]:
    """Problems found comparing the backup's files to the manifest (empty when intact)."""
    present = _present(folder, manifest)
    actual = dict(zip(present, sha256_files([folder / rel for rel in present]), strict=True))
    return _file_problems(folder, manifest, actual)


def verify_files_and_rows(folder: Path, manifest: Manifest) -> tuple[list[str], dict[str, int]]:
    """:func:`verify_files`, and the COPY rows of every file present (relative path -> rows),
    from the same single read of each file, one thread per core."""
    present = _present(folder, manifest)
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        facts = dict(zip(present, pool.map(file_facts, [folder / r for r in present]), strict=True))
    actual = {rel: f.sha256 for rel, f in facts.items()}
    return _file_problems(folder, manifest, actual), {r: f.copy_rows for r, f in facts.items()}


def _expected(manifest: Manifest) -> dict[str, str]:
    expected = dict(manifest.postgres.files)
    if manifest.redis:
        expected[REDIS_NAME] = manifest.redis.sha256
    return expected


def _present(folder: Path, manifest: Manifest) -> list[str]:
    return [rel for rel in sorted(_expected(manifest)) if (folder / rel).is_file()]


def _file_problems(folder: Path, manifest: Manifest, actual: dict[str, str]) -> list[str]:
    problems: list[str] = []
    for rel, digest in sorted(_expected(manifest).items()):
        if rel not in actual:
            problems.append(f"{rel}: missing")
        elif actual[rel] != digest:
            problems.append(f"{rel}: sha256 differs from the manifest")
    dump = folder / DUMP_NAME
    if dump.is_dir():
        present = {str(p.relative_to(folder)) for p in dump.rglob("*") if p.is_file()}
        extra = present - set(manifest.postgres.files)
        problems += [f"{rel}: not in the manifest" for rel in sorted(extra)]
    return problems
