"""Copy of a Redis keyspace (every db, with TTLs, stream groups and pending entries) and its
verification.

Reading: every key is read by type (``GET``, ``HSCAN``, ``SSCAN``, ``ZSCAN``, ``LRANGE`` pages,
``XRANGE`` pages plus the stream's state: last id, ``entries-added``, ``max-deleted-entry-id``,
consumer groups, consumers, pending entries) into a canonical logical value, and, for a backup,
its ``DUMP`` payload as well. The logical value is what digests and comparisons use.

Two restore paths (``paths``): ``dump`` restores each payload with ``RESTORE … REPLACE ABSTTL``,
byte-exact, where the target loads the source's payloads (same or newer RDB version: Redis 7.0's
RDB 10 loads into Valkey 9, Valkey's RDB 80 does not load into Redis 7); ``logical`` rebuilds each
key with plain write commands and a stream's groups with ``XGROUP CREATE … ENTRIESREAD``,
``XGROUP CREATECONSUMER``, ``XCLAIM … TIME RETRYCOUNT FORCE JUSTID`` and ``XSETID … ENTRIESADDED
MAXDELETEDID`` (Redis >= 7). ``auto`` asks the target with one payload before writing anything.

Consistency: keys are read one page at a time, so the copy is only a consistent snapshot when
nothing writes to the source while it is read (stop v1's writers first).

Atomicity of the restore: every key is rebuilt as ``DEL`` (or ``RESTORE … REPLACE``), the type's
write commands (values split into commands of at most ``batch`` elements) and ``PEXPIREAT``, all
inside one ``MULTI``/``EXEC``. Several small keys share a transaction; a big key gets one of its
own. Redis queues a transaction in memory before ``EXEC``, so restoring a key needs about twice
its size in free memory on both ends: fine for a cache/session/queue store, not meant for single
values of hundreds of megabytes. In exchange no key is ever visible half-written, and re-running
converges.

What is compared: values, absolute expiry, and for streams the last id, counters, groups (last
delivered id, entries read), consumers and pending entries (owner and delivery count; idle times
grow by themselves and are carried, not compared). What is refused (``PreflightError`` before
anything is written): module types such as ``ReJSON-RL``. What is not carried by the logical path:
per-field hash TTLs (Redis 7.4 ``HEXPIRE``), consumers' seen/active times, LRU/LFU statistics
(the dump path carries what the payload holds).

Error messages name keys (``repr``, truncated), never values.

Files: ``records`` (KeyRecord, canonical encoding, digests), ``streams`` (a stream's groups and
counters: read, digest, rebuild), ``client`` (the ``Connect`` callable and client checks),
``read`` (reading a live keyspace by type), ``backup_codec`` and ``stream_codec`` (one record as a
JSON line), ``backup_file`` (the backup file: write/read/verify), ``paths`` (dump or logical),
``restore`` (restoring), ``compare`` (KeyspaceDiff and compare_keyspace), ``versions`` (which
server, and v2 never older than v1).
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
from cartrita_assets.redis_copy.streams import ConsumerGroup, PendingEntry, StreamState
from cartrita_assets.redis_copy.versions import ServerVersion, check_not_older, server_version

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_VERSION",
    "DIFF_LIST_CAP",
    "SUPPORTED_TYPES",
    "BackupSummary",
    "ConsumerGroup",
    "Connect",
    "KeyRecord",
    "KeyspaceDiff",
    "PendingEntry",
    "RestoreSummary",
    "ServerVersion",
    "StreamEntry",
    "StreamState",
    "check_not_older",
    "compare_keyspace",
    "databases_in_use",
    "key_label",
    "keyspace_digest",
    "read_backup",
    "read_keyspace",
    "restore_keyspace",
    "server_version",
    "verify_backup",
    "write_backup",
]
