"""Logical, version-portable copy of a Redis keyspace (every db, with TTLs) and its verification.

Why logical: a ``DUMP`` payload carries the RDB version of the server that made it, and a Redis 7
payload cannot be ``RESTORE``-d into an older server. So every key is read by type (``GET``,
``HSCAN``, ``SSCAN``, ``ZSCAN``, ``LRANGE`` pages, ``XRANGE`` pages) into a canonical logical
value, and rebuilt with plain write commands that every Redis >= 5 understands.

Consistency: keys are read one page at a time, so the copy is only a consistent snapshot when
nothing writes to the source while it is read (stop v1's writers first).

Atomicity of the restore: every key is rebuilt as ``DEL``, the type's write commands (values
split into commands of at most ``batch`` elements) and ``PEXPIREAT``, all inside one
``MULTI``/``EXEC``. Several small keys share a transaction; a big key gets one of its own. Redis
queues a transaction in memory before ``EXEC``, so restoring a key needs about twice its size in
free memory on both ends: fine for a cache/session/queue store, not meant for single values of
hundreds of megabytes. In exchange no key is ever visible half-written, and re-running converges.

What is copied: string (incl. bitmaps and HyperLogLogs), hash, list, set, zset (incl. geo),
stream entries (ids kept) and the stream's last generated id; absolute expiry in ms.
What is refused (``PreflightError`` before anything is written): module types such as
``ReJSON-RL``, streams with consumer groups. What is not carried over: per-field hash TTLs
(Redis 7.4 ``HEXPIRE``), the Redis 7 stream counters ``entries-added``/``max-deleted-entry-id``,
LRU/LFU access statistics.

Error messages name keys (``repr``, truncated), never values.

Files: ``records`` (KeyRecord, canonical encoding, digests), ``client`` (the ``Connect`` callable
and client checks), ``read`` (reading a live keyspace by type), ``backup_codec`` (one record as a
JSON line), ``backup_file`` (the backup file: write/read/verify), ``restore`` (restoring),
``compare`` (KeyspaceDiff and compare_keyspace).
"""

from cartrita_assets.redis_copy.backup_file import (
    BACKUP_FORMAT,
    BACKUP_VERSION,
    BackupSummary,
    read_backup,
    verify_backup,
    write_backup,
)
from cartrita_assets.redis_copy.client import Connect
from cartrita_assets.redis_copy.compare import DIFF_LIST_CAP, KeyspaceDiff, compare_keyspace
from cartrita_assets.redis_copy.read import _read_meta as _read_meta
from cartrita_assets.redis_copy.read import _read_strings as _read_strings
from cartrita_assets.redis_copy.read import _read_value as _read_value
from cartrita_assets.redis_copy.read import databases_in_use, read_keyspace
from cartrita_assets.redis_copy.records import (
    SUPPORTED_TYPES,
    KeyRecord,
    StreamEntry,
    key_label,
    keyspace_digest,
)
from cartrita_assets.redis_copy.restore import RestoreSummary, restore_keyspace

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_VERSION",
    "DIFF_LIST_CAP",
    "SUPPORTED_TYPES",
    "BackupSummary",
    "Connect",
    "KeyRecord",
    "KeyspaceDiff",
    "RestoreSummary",
    "StreamEntry",
    "compare_keyspace",
    "databases_in_use",
    "key_label",
    "keyspace_digest",
    "read_backup",
    "read_keyspace",
    "restore_keyspace",
    "verify_backup",
    "write_backup",
]
