"""Where the local pooler and read replica of v2 live and listen."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from cartrita_assets.cluster.v2 import LocalV2Target, Log, V2Target
from cartrita_assets.errors import ServingError
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.serving.pooler import LocalPooler
from cartrita_assets.serving.replica import LocalReplica

REPLICA_MANIFESTS = "the k8s/overlays/replica overlay"


class ServingResource(dg.ConfigurableResource):
    """The local PgBouncer and read replica in front of / beside the local v2, under v2's folder.

    Attributes:
        pooler_port: PgBouncer's port on 127.0.0.1.
        replica_port: the read replica's port on 127.0.0.1.
        pgbouncer: a PgBouncer binary; empty: Debian's.
        durable: ``False`` turns the replica's fsync off (tests only).
    """

    pooler_port: int = 32434
    replica_port: int = 32433
    pgbouncer: str = ""
    durable: bool = True

    def pooler(self, v2: V2Target, log: Log = lambda _m: None) -> LocalPooler:
        local = _local(v2, "v2_pooler", "k8s/pgbouncer.yaml")
        base = Path(local.base_dir) / "pooler"
        return LocalPooler(base, self.pooler_port, local.pg_port, self.pgbouncer, log=log)

    def primary(self, v2: V2Target, log: Log = lambda _m: None) -> LocalPostgres:
        """v2's local PostgreSQL, the replica's primary."""
        return _local(v2, "v2_read_replica", REPLICA_MANIFESTS).servers(log)[0]

    def replica(self, v2: V2Target, log: Log = lambda _m: None) -> LocalReplica:
        local = _local(v2, "v2_read_replica", REPLICA_MANIFESTS)
        durable = self.durable and local.durable
        return LocalReplica(Path(local.base_dir) / "replica", self.replica_port, durable, log)

    def local_servers(self, v2: V2Target) -> list[tuple[str, LocalPooler | LocalReplica]]:
        """The local pooler and read replica of ``v2``, named (none in a cluster, where they are
        the namespace's pods)."""
        if not isinstance(v2, LocalV2Target):
            return []
        return [("v2 pooler (PgBouncer)", self.pooler(v2)), ("v2 read replica", self.replica(v2))]

    def status_lines(self, v2: V2Target) -> list[str]:
        """One line each for the local pooler and read replica of ``v2``."""
        return [
            f"{label} on 127.0.0.1:{server.port}: "
            + ("running" if server.is_running() else "stopped")
            for label, server in self.local_servers(v2)
        ]

    def stop_local(self, v2: V2Target) -> list[str]:
        """Stop the local pooler and read replica of ``v2`` where they run (before v2 itself, so
        neither is left retrying a stopped server); what was stopped."""
        return [label for label, server in self.local_servers(v2) if server.stop()]


def _local(v2: V2Target, asset: str, manifests: str) -> LocalV2Target:
    if not isinstance(v2, LocalV2Target):
        raise ServingError(
            f"{asset} runs the embedded default's local server; in a cluster apply {manifests} "
            "(`kubectl apply -k`) instead."
        )
    return v2
