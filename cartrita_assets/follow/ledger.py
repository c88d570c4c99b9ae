"""The ledger: what follow mode created on v1 and v2, so status, abort and a re-run after a crash
find it. One JSON file (0600) in the state folder; an entry is written BEFORE the object is
created, so a crash between the two leaves an entry whose object may be missing (cleaning
tolerates that), never an object nobody knows about.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cartrita_assets.redaction import private_dir, write_private_file

LEDGER_NAME = "ledger.json"


@dataclass
class Ledger:
    """Follow mode's objects. Names only: no password is ever stored here.

    Attributes:
        database: v1's database.
        slot: the logical replication slot on v1.
        publication: the publication on v1.
        subscription: the subscription on v2 (in ``v2_database``).
        v2_database: the v2 database that subscribes.
        replica_identities: v1 tables set to REPLICA IDENTITY FULL by follow mode.
        read_only: v1's database was set to default_transaction_read_only (the freeze).
        redis_replica: v2 Redis was made a replica of v1.
        redis_min_replicas: v1 Redis's ``min-replicas-to-write`` before the freeze, when changed.
        backup_id: the backup taken in the slot's snapshot.
        snapshot_lsn: the slot's consistent point (where the change stream starts).
        catalog_fingerprint: v1's table definitions at the snapshot (DDL detection).
        state: ``following``, ``frozen`` or ``cut over``.
    """

    database: str
    slot: str
    publication: str
    subscription: str = ""
    v2_database: str = ""
    replica_identities: list[str] = field(default_factory=list)
    read_only: bool = False
    redis_replica: bool = False
    redis_min_replicas: int | None = None
    backup_id: str = ""
    snapshot_lsn: str = ""
    catalog_fingerprint: str = ""
    state: str = "following"

    def v1_objects(self) -> list[str]:
        """What this ledger says exists on v1, for metadata and ``follow status``."""
        out = []
        if self.state != "cut over":
            out += [f"replication slot {self.slot}", f"publication {self.publication}"]
        out += [f"REPLICA IDENTITY FULL on {t}" for t in self.replica_identities]
        if self.read_only:
            out.append(f"default_transaction_read_only = on for database {self.database}")
        if self.redis_min_replicas is not None:
            out.append("Redis min-replicas-to-write 1 (writes refused without a replica)")
        return out


def ledger_path(root: Path) -> Path:
    return root / LEDGER_NAME


def load(root: Path) -> Ledger | None:
    """The ledger under ``root``, or None when follow mode left nothing."""
    path = ledger_path(root)
    if not path.exists():
        return None
    return Ledger(**json.loads(path.read_text()))


def save(root: Path, ledger: Ledger) -> None:
    """Write the ledger (0600, in a 0700 folder)."""
    private_dir(root)
    write_private_file(ledger_path(root), json.dumps(asdict(ledger), indent=2) + "\n")


def remove(root: Path) -> None:
    """Forget the ledger (everything it listed was removed)."""
    ledger_path(root).unlink(missing_ok=True)
