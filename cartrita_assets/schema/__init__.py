"""Versioned SQL migrations that cannot drift: ordered, checksummed, locked, recorded.

One library used by the ``schema_version`` asset, ``cartrita db migrate`` and the in-cluster Job.
Each file runs whole in one transaction together with its history row, so a failure leaves no
partial objects; a file whose first line is ``-- cartrita: no-transaction`` runs on its own (one
statement, e.g. CREATE INDEX CONCURRENTLY).
"""

from cartrita_assets.schema.files import (
    Migration,
    checksum,
    load_migrations,
    manifest_problems,
    write_manifest,
)
from cartrita_assets.schema.history import Applied, read_history, status_rows
from cartrita_assets.schema.runner import MigrationRunner

__all__ = [
    "Applied",
    "Migration",
    "MigrationRunner",
    "checksum",
    "load_migrations",
    "manifest_problems",
    "read_history",
    "status_rows",
    "write_manifest",
]
