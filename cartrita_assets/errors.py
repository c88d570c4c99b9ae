"""Errors whose message names the problem and the fix.

Assets let these propagate; the message is what a data engineer reads in the UI, so it never
contains a secret value (only key names, hosts, ports and file paths).
"""


class CartritaError(Exception):
    """Base of every error this project raises on purpose."""


class EnvFileError(CartritaError):
    """The v1 environment file is missing, malformed or incomplete."""


class LocalServerError(CartritaError):
    """A project-managed PostgreSQL or Redis server could not be started or reached."""


class ConnectionFailed(CartritaError):
    """A database or cache refused the connection (host, port or credentials)."""


class PreflightError(CartritaError):
    """A precondition of a migration step does not hold; nothing was changed."""


class BackupIntegrityError(CartritaError):
    """A backup's files do not match the checksums its manifest recorded."""


class MigrationLockedError(CartritaError):
    """Another forward or rollback run holds the migration lock."""


class RestoreError(CartritaError):
    """pg_restore or the Redis restore reported an error."""


class MigrationError(CartritaError):
    """A migration could not be applied; the message names the file and what to do."""


class ChecksumMismatch(MigrationError):
    """An applied migration's file changed since it was applied."""


class MigrationLockTimeout(MigrationError):
    """Another runner held the migration lock for longer than the timeout."""


class ServingError(CartritaError):
    """The connection pooler or the read replica could not be set up or reached."""
