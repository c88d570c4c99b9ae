"""Choosing how keys reach the target: byte-exact ``DUMP``/``RESTORE``, or the logical rebuild.

A ``DUMP`` payload ends with the RDB version of the server that made it; a server refuses
payloads of a newer RDB version than its own, and Valkey 9 (RDB 80) also refuses RDB 12, which
Redis 7.4 and 8 write (measured with Redis 8.2.3). Rather than keep a table of versions, the
target is asked: one payload is restored under a scratch name and deleted again, before any key
is written.
"""

from __future__ import annotations

import secrets

import redis

from cartrita_assets.errors import RestoreError
from cartrita_assets.redis_copy.records import KeyRecord

COPY_PATHS = ("auto", "dump", "logical")
_REFUSALS = ("payload version", "bad data format")


def payload_rdb_version(payload: bytes) -> int:
    """The RDB version a ``DUMP`` payload was written with (its last 10 bytes: version, CRC)."""
    return int.from_bytes(payload[-10:-8], "little")


def choose_path(client: redis.Redis, sample: KeyRecord, wanted: str) -> str:
    """``dump`` or ``logical`` for a copy whose payloads look like ``sample.dump``.

    Raises:
        RestoreError: ``dump`` was asked for and the target does not load the payloads.
    """
    if wanted == "logical" or sample.dump is None:
        return "logical"
    if accepts_payload(client, sample.dump):
        return "dump"
    if wanted == "auto":
        return "logical"
    raise RestoreError(
        f"The target Redis does not load the backup's DUMP payloads (RDB version "
        f"{payload_rdb_version(sample.dump)}), so the dump copy path cannot be used: choose "
        "the logical path (redis_copy_path: logical) or auto."
    )


def accepts_payload(client: redis.Redis, payload: bytes) -> bool:
    """True when the server ``RESTORE``s ``payload`` (tried under a scratch key, then deleted)."""
    probe = b"cartrita:restore-probe:" + secrets.token_hex(8).encode()
    pipe = client.pipeline(transaction=True)
    pipe.execute_command(b"RESTORE", probe, 60_000, payload)
    pipe.execute_command(b"DEL", probe)
    try:
        pipe.execute()
    except redis.ResponseError as exc:
        if any(text in str(exc).lower() for text in _REFUSALS):
            return False
        raise
    return True
