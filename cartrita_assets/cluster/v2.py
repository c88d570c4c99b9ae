"""The v2 target. Assets see one interface; the environment decides whether it is a pair of local
servers or the cluster's StatefulSets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from cartrita_assets.cluster.envswitch import Endpoint
from cartrita_assets.cluster.k8s.manifests import (
    DEFAULT_NAMESPACE,
    MIGRATE_JOB_MANIFEST,
    MIN_PGVECTOR_MAJOR,
    ClusterParams,
    redis_image,
    render_cluster,
    render_migrate_job,
    sort_for_apply,
    to_yaml,
    validate_objects,
)
from cartrita_assets.cluster.k8s.probe import ProbeOutcome
from cartrita_assets.envfile import PostgresSettings, RedisSettings
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.local.redis import LocalRedis
from cartrita_assets.local.redis_servers import server_from_path
from cartrita_assets.redaction import new_password, private_dir, write_private_file

Log = Callable[[str], None]
Objects = list[dict[str, Any]]


class V2Target(dg.ConfigurableResource):
    """Base of the v2 targets: PostgreSQL with pgvector, and Redis.

    Attributes:
        namespace: the Kubernetes namespace of every object rendered or applied for v2.
    """

    namespace: str = DEFAULT_NAMESPACE

    def cluster_params(
        self, v1_major: int, secret_names: dict[str, str], v1_redis: str = ""
    ) -> ClusterParams:
        """What `render_cluster` patches into k8s/pgvector-redis.yaml for this target
        (``v1_redis``: v1's Redis, e.g. ``Redis 7.0.15``; the Redis image is never older)."""
        return ClusterParams(
            namespace=self.namespace,
            postgres_major=max(v1_major, MIN_PGVECTOR_MAJOR),
            redis_image=redis_image(v1_redis),
            postgres_secret=secret_names["postgres"],
            redis_secret=secret_names["redis"],
        )

    def cluster_objects(
        self, v1_major: int, secret_names: dict[str, str], v1_redis: str = ""
    ) -> Objects:
        """v2's data tier in apply order (Namespace, Services, StatefulSets)."""
        params = self.cluster_params(v1_major, secret_names, v1_redis)
        return sort_for_apply(render_cluster(params))

    def migrate_job(self, secret_names: dict[str, str]) -> dict[str, Any]:
        """k8s/job-db-migrate.yaml for this namespace and the current PostgreSQL Secret."""
        return render_migrate_job(self.namespace, secret_names["postgres"])

    def preflight(self, objects: Objects, log: Log) -> str:
        """Validate ``objects`` before anything changes; raise naming every invalid one.

        Locally: the Kubernetes 1.30 schemas (strict). Returns what was checked.
        """
        validate_objects(objects)
        log(f"{len(objects)} Kubernetes objects valid against the Kubernetes 1.30 schemas")
        return f"{len(objects)} objects validated against the Kubernetes 1.30 schemas"

    def ensure_running(self, log: Log, redis_password: str | None = None) -> dict[str, str]:
        """Bring v2 up (idempotent) and return a description of its endpoints.

        Args:
            log: progress lines.
            redis_password: the password v2 Redis requires (v1's, so credentials carry over).
        """
        raise NotImplementedError

    def admin(self, dbname: str = "postgres") -> PostgresSettings:
        """Superuser connection settings for v2 PostgreSQL."""
        raise NotImplementedError

    def redis(self, db: int = 0) -> RedisSettings:
        """Connection settings for v2 Redis."""
        raise NotImplementedError

    def stop(self, log: Log) -> list[str]:
        """Stop v2 traffic; returns what was stopped."""
        raise NotImplementedError

    def redis_password(self, preferred: str | None) -> str:
        """v2 Redis's password: v1's when it has one, else one v2 generates and keeps."""
        raise NotImplementedError

    def app_endpoints(self) -> tuple[Endpoint, Endpoint]:
        """Where the application reaches v2 PostgreSQL and Redis (for ``.env.v2``)."""
        raise NotImplementedError

    def publish_secrets(self, objects: list[dict[str, object]], log: Log) -> str:
        """Make the Secrets available to v2; returns what was done (for the metadata)."""
        raise NotImplementedError

    def publish_cluster(
        self, v1_major: int, secret_names: dict[str, str], log: Log, v1_redis: str = ""
    ) -> str:
        """Render (and in a cluster, apply) v2's objects for v1's PostgreSQL major and Redis."""
        raise NotImplementedError

    def status_lines(self) -> list[str]:
        """What runs for v2 right now (servers, or pods, services and volume claims)."""
        raise NotImplementedError

    def logs(self, component: str, lines: int) -> str:
        """The last ``lines`` lines of the ``postgres`` or ``redis`` log."""
        raise NotImplementedError

    def probe_reach(
        self, command: list[str], v1_major: int, timeout: float, log: Log
    ) -> ProbeOutcome | None:
        """Run ``command`` (a credential-free reach test, e.g. follow mode's preflight opening a
        connection to each of v1's addresses) where v2's servers run, in v2's PostgreSQL image.
        None: nothing to probe, v2 runs on this machine and its own connections are the
        probe."""
        return None


class LocalV2Target(V2Target):
    """v2 as a PostgreSQL 18 + pgvector and a Redis server started under the state folder."""

    base_dir: str = ".cartrita/v2"
    pg_port: int = 32432
    redis_port: int = 32379
    durable: bool = True
    redis_server: str = ""  # a Redis server binary; empty: the bundled valkey-server

    def servers(self, log: Log = lambda _m: None) -> tuple[LocalPostgres, LocalRedis]:
        """The two local servers (not started)."""
        base = Path(self.base_dir)
        pg = LocalPostgres(base / "postgres", self.pg_port, self.durable, log)
        server = server_from_path(self.redis_server) if self.redis_server else None
        return pg, LocalRedis(base / "redis", self.redis_port, log, server)

    def ensure_running(self, log: Log, redis_password: str | None = None) -> dict[str, str]:
        pg, rds = self.servers(log)
        admin = pg.ensure_running()
        rds.ensure_running(redis_password)
        return {
            "kind": "local servers",
            "postgres": admin.masked_dsn(),
            "redis": rds.settings().masked_url(),
            "data_dir": str(Path(self.base_dir).resolve()),
        }

    def admin(self, dbname: str = "postgres") -> PostgresSettings:
        return self.servers()[0].settings(dbname)

    def redis(self, db: int = 0) -> RedisSettings:
        return self.servers()[1].settings(db)

    def redis_password(self, preferred: str | None) -> str:
        rds = self.servers()[1]
        if preferred:
            return preferred
        if not rds.password_file.exists():
            rds.base_dir.mkdir(parents=True, exist_ok=True)
            write_private_file(rds.password_file, new_password() + "\n")
        return rds.password_file.read_text().strip()

    def app_endpoints(self) -> tuple[Endpoint, Endpoint]:
        return Endpoint("127.0.0.1", self.pg_port), Endpoint("127.0.0.1", self.redis_port)

    def rendered_dir(self) -> Path:
        """Where the local environment writes the Kubernetes objects it renders (not applied)."""
        return Path(self.base_dir) / "rendered"

    def publish_secrets(self, objects: list[dict[str, object]], log: Log) -> str:
        path = private_dir(self.rendered_dir()) / "secrets.yaml"
        write_private_file(path, to_yaml(objects))
        log(f"Local environment: Secrets rendered to {path} (0600), not applied")
        return f"rendered to {path} (0600), not applied: local environment"

    def publish_cluster(
        self, v1_major: int, secret_names: dict[str, str], log: Log, v1_redis: str = ""
    ) -> str:
        objects = self.cluster_objects(v1_major, secret_names, v1_redis)
        job = self.migrate_job(secret_names)
        self.preflight([*objects, job], log)
        folder = self.rendered_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "pgvector-redis.yaml"
        path.write_text(to_yaml(objects))
        (folder / MIGRATE_JOB_MANIFEST).write_text(to_yaml([job]))
        log(f"Local environment: {len(objects)} cluster objects validated and rendered to {path}")
        return (
            f"{len(objects)} objects rendered to {path} (and {MIGRATE_JOB_MANIFEST} beside it), "
            "validated, not applied: local environment"
        )

    def status_lines(self) -> list[str]:
        out = []
        for kind, server in zip(("PostgreSQL", "Redis"), self.servers(), strict=True):
            state = "running" if server.is_running() else "stopped"
            out.append(f"local v2 {kind} on 127.0.0.1:{server.port}: {state} ({server.base_dir})")
        return out

    def logs(self, component: str, lines: int) -> str:
        pg, rds = self.servers()
        path = pg.log_file if component == "postgres" else rds.base_dir / "redis.log"
        if not path.exists():
            return f"(no log yet at {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, log: Log) -> list[str]:
        stopped = []
        for name, server in zip(("postgres", "redis"), self.servers(log), strict=True):
            if server.stop():
                stopped.append(f"local v2 {name}")
        return stopped
