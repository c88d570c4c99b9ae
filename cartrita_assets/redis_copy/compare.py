"""Verifying a server against expected records: KeyspaceDiff and compare_keyspace.

Streams compare entries, last id, counters, groups, consumers and pending entries (owner and
delivery count; idle times grow by themselves and are not compared).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cartrita_assets.redis_copy.client import Connect, _server_time_ms
from cartrita_assets.redis_copy.read import read_keyspace
from cartrita_assets.redis_copy.records import KeyRecord, key_label

DIFF_LIST_CAP = 20


@dataclass
class KeyspaceDiff:
    """Differences between an expected keyspace and a server's.

    The lists hold at most 20 key labels each (see :func:`key_label`); the ``*_count`` fields
    count every one.
    """

    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    ttl_mismatch: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    compared: int = 0
    missing_count: int = 0
    different_count: int = 0
    ttl_mismatch_count: int = 0
    extra_count: int = 0
    expired_skipped: int = 0

    def ok(self) -> bool:
        """True when nothing expected is missing, different or has another expiry.

        Returns:
            Whether the target holds the expected keyspace (extra keys do not count).
        """
        return not (self.missing_count or self.different_count or self.ttl_mismatch_count)

    def describe(self) -> str:
        """One line for logs and error messages, e.g. ``compared 10: 1 missing (db0:b'a')``.

        Returns:
            The counts with up to 3 example keys each.
        """
        parts = [f"compared {self.compared}"]
        for kind in ("missing", "different", "ttl_mismatch", "extra"):
            count = getattr(self, f"{kind}_count")
            if count:
                parts.append(f"{count} {kind} ({', '.join(getattr(self, kind)[:3])})")
        return "; ".join(parts)

    def add(self, kind: str, label: str) -> None:
        """Record one key under ``kind`` (missing, different, ttl_mismatch or extra)."""
        setattr(self, f"{kind}_count", getattr(self, f"{kind}_count") + 1)
        labels: list[str] = getattr(self, kind)
        if len(labels) < DIFF_LIST_CAP:
            labels.append(label)


def compare_keyspace(
    connect: Connect,
    expected: Iterable[KeyRecord],
    ttl_tolerance_ms: int = 2000,
    now_ms: int | None = None,
) -> KeyspaceDiff:
    """Compare a server's keyspace (every db in use) with the expected records.

    Args:
        connect: returns a client (``decode_responses=False``) for a db number of the target.
        expected: the records the target should hold, e.g. :func:`read_backup`.
        ttl_tolerance_ms: largest accepted difference between absolute expiries.
        now_ms: expected keys expiring at or before this are ignored; default the target's
            clock right after it was read.

    Returns:
        Missing, different, TTL-mismatched and extra keys (extra keys do not fail ``ok()``).
    """
    actual = {(r.db, r.key): r for r in read_keyspace(connect)}
    now = now_ms if now_ms is not None else _server_time_ms(connect(0))
    diff = KeyspaceDiff()
    for rec in expected:
        found = actual.pop((rec.db, rec.key), None)
        if rec.expire_at_ms is not None and rec.expire_at_ms <= now:
            diff.expired_skipped += 1
            continue
        diff.compared += 1
        _compare_one(diff, rec, found, ttl_tolerance_ms)
    for db, key in sorted(actual):
        diff.add("extra", key_label(db, key))
    return diff


def _compare_one(
    diff: KeyspaceDiff,
    rec: KeyRecord,
    found: KeyRecord | None,
    tolerance_ms: int,
) -> None:
    label = key_label(rec.db, rec.key)
    if found is None:
        diff.add("missing", label)
        return
    expire_at = found.expire_at_ms
    # a format-1 record has no stream state to compare: compare what it has
    seen = found.legacy() if rec.stream is None else found
    if seen.digest() != rec.digest():
        diff.add("different", label)
    if (expire_at is None) != (rec.expire_at_ms is None) or (
        expire_at is not None
        and rec.expire_at_ms is not None
        and abs(expire_at - rec.expire_at_ms) > tolerance_ms
    ):
        diff.add("ttl_mismatch", label)
