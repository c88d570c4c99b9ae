"""What v1 must offer before follow mode changes anything, as pure decisions on read facts.

``read_facts`` only reads v1 (a READ ONLY session); ``problems`` turns the facts into one message
per failure, each naming the fix. Nothing is written to v1 until the list is empty.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import psycopg

LOOPBACK = ("127.0.0.1", "localhost", "::1", "")


def is_loopback(host: str) -> bool:
    """True for an empty host, ``localhost`` or an address in 127.0.0.0/8 or ::1."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class V1Facts:
    """What follow mode needs to know about v1's PostgreSQL.

    Attributes:
        wal_level: ``SHOW wal_level``.
        free_slots: ``max_replication_slots`` minus the slots in use.
        free_senders: ``max_wal_senders`` minus the WAL senders running.
        can_replicate: the role is a superuser or has REPLICATION.
        keyless_tables: tables with neither a primary key nor a usable replica identity.
        large_objects: rows of ``pg_largeobject_metadata`` (logical replication skips them).
        host: where v2 connects to v1's PostgreSQL (``v1_host_for_v2``, else POSTGRES_HOST).
        redis_host: where v2 connects to v1's Redis ("" when v1 has no Redis).
        major: v1's PostgreSQL major version.
    """

    wal_level: str
    free_slots: int
    free_senders: int
    can_replicate: bool
    keyless_tables: list[str] = field(default_factory=list)
    large_objects: int = 0
    host: str = ""
    redis_host: str = ""
    major: int = 0


_FACTS_SQL = """
SELECT current_setting('wal_level'),
       current_setting('max_replication_slots')::int
         - (SELECT count(*) FROM pg_catalog.pg_replication_slots),
       current_setting('max_wal_senders')::int
         - (SELECT count(*) FROM pg_catalog.pg_stat_replication),
       (SELECT rolsuper OR rolreplication FROM pg_catalog.pg_roles WHERE rolname = current_user),
       (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata),
       current_setting('server_version_num')::int / 10000
"""

# Ordinary and partitioned-leaf tables whose UPDATE/DELETE could not be replicated: replica
# identity DEFAULT without a primary key, or NOTHING. (INDEX identities name a unique index.)
_KEYLESS_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
  AND (c.relreplident = 'n'
       OR (c.relreplident = 'd' AND NOT EXISTS (
             SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
ORDER BY 1
"""


def read_facts(conn: psycopg.Connection, host: str, redis_host: str = "") -> V1Facts:
    """Read the facts from a v1 session (read only); ``host`` and ``redis_host`` are where v2
    connects to v1."""
    row = conn.execute(_FACTS_SQL).fetchone()
    assert row is not None
    keyless = [str(r[0]) for r in conn.execute(_KEYLESS_SQL).fetchall()]
    return V1Facts(
        wal_level=str(row[0]),
        free_slots=int(row[1]),
        free_senders=int(row[2]),
        can_replicate=bool(row[3]),
        keyless_tables=keyless,
        large_objects=int(row[4]),
        host=host,
        redis_host=redis_host,
        major=int(row[5]),
    )


def problems(facts: V1Facts, *, full_identity_consent: bool, topology: str) -> list[str]:
    """Every reason follow mode cannot start, one message each with its fix (empty: go).

    Args:
        facts: what ``read_facts`` found.
        full_identity_consent: the user allowed ``REPLICA IDENTITY FULL`` on keyless tables.
        topology: ``local`` (v2 runs on this machine) or ``kubernetes`` (v2 runs in pods).
    """
    out = []
    if facts.wal_level != "logical":
        out.append(
            f"v1 PostgreSQL runs with wal_level = {facts.wal_level}; follow mode needs "
            "wal_level = logical (a restart is needed). In v1's Compose file: "
            "`command: postgres -c wal_level=logical -c max_replication_slots=10 "
            "-c max_wal_senders=10`, then `docker compose up -d postgres`; or "
            "ALTER SYSTEM SET wal_level = logical and restart v1's PostgreSQL."
        )
    if facts.free_slots < 1:
        out.append(
            "v1 has no free replication slot (max_replication_slots is used up): raise "
            "max_replication_slots (restart needed) or drop an unused slot "
            "(SELECT pg_drop_replication_slot(name))."
        )
    if facts.free_senders < 1:
        out.append(
            "v1 has no free WAL sender (max_wal_senders is used up): raise max_wal_senders "
            "(restart needed)."
        )
    if not facts.can_replicate:
        out.append(
            "v1's role may not replicate: grant it with ALTER ROLE <user> REPLICATION (as a "
            "superuser), or point the environment file at a role that has it."
        )
    if facts.keyless_tables and not full_identity_consent:
        shown = ", ".join(facts.keyless_tables[:20])
        extra = len(facts.keyless_tables) - 20
        more = f" and {extra} more" if extra > 0 else ""
        out.append(
            f"{len(facts.keyless_tables)} v1 table(s) have no primary key or replica identity, so "
            f"their updates and deletes cannot be replicated: {shown}{more}. Add a primary key, "
            "or allow follow mode to set REPLICA IDENTITY FULL on them (removed again after the "
            "cutover or abort): `cartrita forward --follow --replica-identity-full`."
        )
    if facts.large_objects:
        out.append(
            f"v1 holds {facts.large_objects} large object(s) (pg_largeobject), which logical "
            "replication does not carry: migrate without --follow (one snapshot, application "
            "stopped), or move them into bytea columns first."
        )
    if topology == "kubernetes":
        hosts = [("PostgreSQL", facts.host)]
        hosts += [("Redis", facts.redis_host)] if facts.redis_host else []
        loop = [f"{what} host is {host or '(empty)'}" for what, host in hosts if is_loopback(host)]
        if loop:
            out.append(
                f"v1's {' and '.join(loop)} as v2 would connect to it, which a v2 pod cannot "
                "reach (loopback is the pod itself): set CARTRITA_V1_HOST_FOR_V2 "
                "(FollowStore.v1_host_for_v2) to an address of v1 that the cluster's pods can "
                "connect to (and open v1's pg_hba.conf for it)."
            )
    return out
