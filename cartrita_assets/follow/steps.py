"""Follow mode's steps: begin (before the backup), subscribe (after the restore), abort.

Each step reads and writes the ledger so a crash at any point leaves something ``abort`` or a
re-run can clean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from psycopg import sql

from cartrita_assets.cluster.k8s.probe import ProbeOutcome
from cartrita_assets.envfile import PostgresSettings, RedisSettings, V1Settings
from cartrita_assets.follow import frozen, preflight, reach, v1side, v2side
from cartrita_assets.follow import ledger as ledgers
from cartrita_assets.follow.ledger import Ledger
from cartrita_assets.follow.v1side import ExportedSlot, FollowError
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.redis_copy.versions import check_not_older, server_version

Log = Callable[[str], None]
# Runs the reachability probe where v2 runs for (addresses, v1's PostgreSQL major); None: there
# is nothing to probe (v2 runs on this machine, its own connections are the probe).
Probe = Callable[[list[reach.Address], int], ProbeOutcome | None]
SLOT = "cartrita_follow"
PUBLICATION = "cartrita_follow"
SUBSCRIPTION = "cartrita_follow"


def check_preflight(
    v1: V1Settings,
    *,
    full_identity_consent: bool,
    topology: str,
    v1_host_for_v2: str = "",
    probe: Probe | None = None,
) -> preflight.V1Facts:
    """Read v1 (read only) and raise one FollowError listing every problem with its fix.

    In the kubernetes topology, once v1's addresses are not loopback (the cheap check),
    ``probe`` tries them from where v2 runs; a failed or impossible probe is one more problem.
    """
    addresses = reach.addresses_for_v2(v1, v1_host_for_v2)
    redis_host = addresses[1].host if len(addresses) > 1 else ""
    with connect(v1.postgres, role=v1side.ROLE, read_only=True) as conn:
        facts = preflight.read_facts(conn, addresses[0].host, redis_host)
    found = preflight.problems(
        facts, full_identity_consent=full_identity_consent, topology=topology
    )
    loopback = any(preflight.is_loopback(a.host) for a in addresses)
    if topology == "kubernetes" and probe is not None and not loopback:
        outcome = probe(addresses, facts.major)
        problem = reach.reach_problem(outcome, addresses) if outcome is not None else None
        if problem:
            found.append(problem)
    if found:
        lines = "\n".join(f"- {p}" for p in found)
        raise FollowError(f"Follow mode cannot start; v1 was not changed:\n{lines}")
    return facts


@contextlib.contextmanager
def begin(
    v1: V1Settings,
    root: Path,
    *,
    full_identity_consent: bool,
    topology: str,
    log: Log,
    v2_admin: Callable[[str], PostgresSettings] | None = None,
    v2_redis: Callable[[], RedisSettings | None] | None = None,
    v1_host_for_v2: str = "",
    probe: Probe | None = None,
) -> Iterator[tuple[ExportedSlot, Ledger]]:
    """Preflight, clean what an earlier run left, then create the publication and the slot and
    yield the slot's exported snapshot (valid inside the ``with``) for the backup to read.
    ``v1_host_for_v2`` and ``probe``: see `check_preflight`."""
    old = ledgers.load(root)
    if old is not None:
        # first, so preflight sees v1 as it was before follow mode (its replica identities)
        log(f"An earlier follow run left: {', '.join(old.v1_objects())}; removing it first")
        abort(v1, root, log, v2_admin=v2_admin, v2_redis=v2_redis)
    facts = check_preflight(v1, full_identity_consent=full_identity_consent, topology=topology,
                            v1_host_for_v2=v1_host_for_v2, probe=probe)  # fmt: skip
    frozen.forget(root)  # an earlier cutover's frozen v1 is not what this run will freeze
    ledger = Ledger(database=v1.postgres.dbname, slot=SLOT, publication=PUBLICATION,
                    replica_identities=list(facts.keyless_tables))  # fmt: skip
    ledgers.save(root, ledger)
    with v1side.writable(v1.postgres) as conn:
        if facts.keyless_tables:
            v1side.set_full_identity(conn, facts.keyless_tables)
            log(f"REPLICA IDENTITY FULL (consented) on {', '.join(facts.keyless_tables)}")
        # the publication must exist before the slot: pgoutput reads it as of each change
        tables = v1side.create_publication(conn, PUBLICATION)
    log(f"Publication {PUBLICATION} on v1 covers {tables} tables")
    with v1side.exported_slot(v1.postgres, SLOT) as slot:
        ledger.snapshot_lsn = slot.consistent_lsn
        ledger.catalog_fingerprint = v1side.snapshot_fingerprint(v1.postgres, slot.snapshot)
        ledgers.save(root, ledger)
        log(f"Slot {SLOT} created at {slot.consistent_lsn}; snapshot {slot.snapshot} exported")
        yield slot, ledger
    ledgers.save(root, ledger)


def subscribe(
    v1: V1Settings,
    root: Path,
    v2_admin: PostgresSettings,
    v2_redis: RedisSettings | None,
    *,
    v1_host_for_v2: str,
    log: Log,
) -> Ledger:
    """v2 subscribes from the slot (no initial copy) and v2 Redis replicates v1, each at the
    address preflight probed (``v1_host_for_v2``, else the service's own host)."""
    ledger = ledgers.load(root)
    if ledger is None:
        raise FollowError(
            "No follow mode state found: materialize v1_backup with follow: true first "
            "(`cartrita forward --follow`)."
        )
    addresses = reach.addresses_for_v2(v1, v1_host_for_v2)
    ledger.subscription, ledger.v2_database = SUBSCRIPTION, v2_admin.dbname
    ledgers.save(root, ledger)
    with connect(v2_admin, role="v2 PostgreSQL") as conn:
        enabled = v2side.enable_capture_always(conn)
        if enabled:
            log(f"Embedding change capture fires for replicated rows on: {', '.join(enabled)}")
        conninfo = v2side.v1_conninfo(v1.postgres, addresses[0].host)
        v2side.create_subscription(conn, SUBSCRIPTION, conninfo, PUBLICATION, SLOT)
    log(f"v2 subscribes to {PUBLICATION} from slot {SLOT} (copy_data = false)")
    if v1.redis is not None and v2_redis is not None:
        v1_client, v2_client = client_for(v1.redis), client_for(v2_redis)
        check_not_older(server_version(v1_client), server_version(v2_client))
        ledger.redis_replica = True
        ledgers.save(root, ledger)
        v2side.start_redis_replica(v2_client, v1.redis, addresses[1].host)
        link = v2side.wait_redis_synced(v2_client)
        log(f"v2 Redis replicates v1: link {link['link']}, offset {link['offset']}")
    return ledger


def abort(
    v1: V1Settings,
    root: Path,
    log: Log,
    *,
    v2_admin: Callable[[str], PostgresSettings] | None = None,
    v2_redis: Callable[[], RedisSettings | None] | None = None,
) -> list[str]:
    """Remove everything the ledger lists, on v2 first (so nothing reconnects), then on v1.

    Returns:
        What was removed, one line each.
    """
    ledger = ledgers.load(root)
    if ledger is None:
        return []
    done = []
    if ledger.subscription and ledger.v2_database and v2_admin is not None:
        with (
            contextlib.suppress(Exception),
            connect(v2_admin(ledger.v2_database), role="v2 PostgreSQL") as conn,
        ):
            if v2side.drop_subscription(conn, ledger.subscription):
                done.append(f"v2 subscription {ledger.subscription}")
    v2_redis_settings = v2_redis() if ledger.redis_replica and v2_redis is not None else None
    if v2_redis_settings is not None:
        v2side.stop_redis_replica(client_for(v2_redis_settings))
        done.append("v2 Redis REPLICAOF (now REPLICAOF NO ONE)")
    done += _clean_v1(v1, ledger)
    ledgers.remove(root)
    for line in done:
        log(f"Removed: {line}")
    return done


def _clean_v1(v1: V1Settings, ledger: Ledger) -> list[str]:
    done = []
    with v1side.writable(replace(v1.postgres, dbname=ledger.database)) as conn:
        if v1side.drop_slot(conn, ledger.slot):
            done.append(f"v1 replication slot {ledger.slot}")
        conn.execute(
            sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(ledger.publication))
        )
        done.append(f"v1 publication {ledger.publication}")
        for table in ledger.replica_identities:
            # already quoted by preflight (quote_ident), as pg_class names it
            conn.execute(
                sql.SQL("ALTER TABLE IF EXISTS {} REPLICA IDENTITY DEFAULT").format(sql.SQL(table))
            )
            done.append(f"v1 REPLICA IDENTITY FULL on {table} (back to DEFAULT)")
        if ledger.read_only:
            v1side.unfreeze(conn, ledger.database)
            done.append(f"v1 default_transaction_read_only on {ledger.database}")
    if ledger.redis_min_replicas is not None and v1.redis is not None:
        client = client_for(v1.redis)
        client.execute_command("CLIENT", "UNPAUSE")
        client.config_set("min-replicas-to-write", ledger.redis_min_replicas)
        done.append("v1 Redis min-replicas-to-write (restored)")
    return done
