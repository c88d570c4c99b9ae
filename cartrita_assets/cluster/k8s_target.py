"""v2 on a Kubernetes cluster: the StatefulSets of k8s/, applied with server-side apply.

The cluster is reached only through ``make_cluster`` (the thin seam over the official client);
tests substitute an in-memory stand-in there.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

from cartrita_assets.cluster.envswitch import Endpoint
from cartrita_assets.cluster.k8s.cluster import Cluster
from cartrita_assets.cluster.k8s.manifests import (
    CLUSTER_MANIFEST,
    MIGRATE_JOB_MANIFEST,
    ClusterParams,
    postgres_image,
    render_cluster,
    to_yaml,
)
from cartrita_assets.cluster.k8s.probe import ProbeOutcome, probe_pod, run_probe
from cartrita_assets.cluster.k8s.secret_objects import same_secret
from cartrita_assets.cluster.k8s.wait import wait_scaled_down, wait_statefulsets_ready
from cartrita_assets.cluster.v2 import Log, Objects, V2Target
from cartrita_assets.envfile import PostgresSettings, RedisSettings
from cartrita_assets.redaction import new_password, private_dir, write_private_file
from cartrita_assets.resources.v1 import V1Source

STATEFULSETS = ["postgres", "redis"]


def make_cluster(kubeconfig: str | None, context: str | None) -> Cluster:
    """The cluster the environment's configuration names (in-cluster, $KUBECONFIG, default)."""
    from cartrita_assets.cluster.k8s.kubernetes_cluster import KubernetesCluster

    return KubernetesCluster.from_environment(kubeconfig, context)


class KubernetesV2Target(V2Target):
    """v2 as the ``postgres`` and ``redis`` StatefulSets in ``namespace``, reached through their
    NodePorts on ``node_host``. v2's PostgreSQL superuser is v1's POSTGRES_USER (the pgvector
    image creates it from the Secret), so credentials carry over."""

    v1: V1Source
    kubeconfig: str | None = None
    context: str | None = None
    node_host: str = "localhost"
    pg_node_port: int = 32432
    redis_node_port: int = 32379
    storage_class: str | None = None
    postgres_storage: str = "10Gi"
    redis_storage: str = "2Gi"
    ready_timeout: float = 600.0
    state_dir: str = ".cartrita/kubernetes"

    def cluster(self) -> Cluster:
        """A client for the configured cluster (made on use, never at import)."""
        return make_cluster(self.kubeconfig, self.context)

    def cluster_params(
        self, v1_major: int, secret_names: dict[str, str], v1_redis: str = ""
    ) -> ClusterParams:
        return replace(
            super().cluster_params(v1_major, secret_names, v1_redis),
            storage_class=self.storage_class,
            postgres_storage=self.postgres_storage,
            redis_storage=self.redis_storage,
            postgres_node_port=self.pg_node_port,
            redis_node_port=self.redis_node_port,
        )

    def _namespace(self) -> dict[str, Any]:
        # the Namespace exactly as pgvector_cluster applies it, so the two never disagree
        objects = render_cluster(ClusterParams(namespace=self.namespace))
        return next(o for o in objects if o["kind"] == "Namespace")

    def preflight(self, objects: Objects, log: Log) -> str:
        """The schemas, then a server-side dry run of every object: an object the server would
        refuse stops the run before anything is changed."""
        super().preflight(objects, log)
        cluster = self.cluster()
        for obj in objects:
            # the run renders the migration Job but never applies it: validate it as new
            as_new = obj["kind"] == "Job"
            cluster.dry_run(self._as_applied(cluster, obj), as_new=as_new)
        log(f"The API server accepted a dry run of all {len(objects)} objects")
        return f"{len(objects)} objects validated by the API server (server-side dry run)"

    def _as_applied(self, cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
        # A StatefulSet a rollback scaled down is scaled back before it is applied (see
        # _undo_scale_down): validate the rest of it, not the replica count that step restores.
        if obj["kind"] != "StatefulSet":
            return obj
        live = cluster.get("apps/v1", "StatefulSet", obj["metadata"]["name"], self.namespace)
        wanted = obj["spec"].get("replicas", 1)
        if live is None or live.get("spec", {}).get("replicas") == wanted:
            return obj
        trimmed = copy.deepcopy(obj)
        trimmed["spec"].pop("replicas", None)
        return trimmed

    def publish_secrets(self, objects: list[dict[str, object]], log: Log) -> str:
        cluster = self.cluster()
        cluster.apply(self._namespace())
        applied = 0
        for obj in objects:
            name = str(obj["metadata"]["name"])  # type: ignore[index]
            if same_secret(cluster.get("v1", "Secret", name, self.namespace), obj):
                log(f"Secret {name} in {self.namespace} already holds this content (immutable)")
                continue
            cluster.apply(obj)
            applied += 1
            log(f"Applied Secret {name} in {self.namespace}")
        unchanged = len(objects) - applied
        return (
            f"{applied} Secrets applied, {unchanged} already present, in namespace "
            f"{self.namespace} (server-side apply)"
        )

    def publish_cluster(
        self, v1_major: int, secret_names: dict[str, str], log: Log, v1_redis: str = ""
    ) -> str:
        objects = self.cluster_objects(v1_major, secret_names, v1_redis)
        job = self.migrate_job(secret_names)
        self.preflight([*objects, job], log)
        folder = private_dir(Path(self.state_dir))
        rendered = folder / CLUSTER_MANIFEST
        rendered.write_text(to_yaml(objects))
        (folder / MIGRATE_JOB_MANIFEST).write_text(to_yaml([job]))
        cluster = self.cluster()
        for obj in objects:
            self._undo_scale_down(cluster, obj, log)
            cluster.apply(obj)
            log(f"Applied {obj['kind']} {obj['metadata']['name']}")
        return (
            f"{len(objects)} objects applied to {self.namespace} (also written to {rendered}; "
            f"the migration Job, not applied, to {folder / MIGRATE_JOB_MANIFEST})"
        )

    def _undo_scale_down(self, cluster: Cluster, obj: dict[str, object], log: Log) -> None:
        # a rollback scaled it through the scale subresource, which now owns spec.replicas:
        # scale back first, or applying the manifest's count would be a field-manager conflict
        if obj["kind"] != "StatefulSet":
            return
        name = str(obj["metadata"]["name"])  # type: ignore[index]
        live = cluster.get("apps/v1", "StatefulSet", name, self.namespace)
        wanted = int(obj["spec"].get("replicas", 1))  # type: ignore[attr-defined]
        if live is not None and live.get("spec", {}).get("replicas") != wanted:
            cluster.scale("StatefulSet", name, self.namespace, wanted)
            log(f"Scaled StatefulSet {name} back to {wanted}")

    def ensure_running(self, log: Log, redis_password: str | None = None) -> dict[str, str]:
        wait_statefulsets_ready(
            self.cluster(), self.namespace, STATEFULSETS, self.ready_timeout, log
        )
        return {
            "kind": f"kubernetes StatefulSets in {self.namespace}",
            "postgres": self.admin().masked_dsn(),
            "redis": self.redis().masked_url(),
        }

    def admin(self, dbname: str = "postgres") -> PostgresSettings:
        v1 = self.v1.settings().postgres
        return replace(v1, host=self.node_host, port=self.pg_node_port, dbname=dbname)

    def redis(self, db: int = 0) -> RedisSettings:
        v1 = self.v1.settings().redis
        password = self.redis_password(v1.password if v1 else None)
        return RedisSettings(
            host=self.node_host, port=self.redis_node_port, password=password, db=db
        )

    def redis_password(self, preferred: str | None) -> str:
        if preferred:
            return preferred
        path = private_dir(Path(self.state_dir)) / "redis.password"
        if not path.exists():
            write_private_file(path, new_password() + "\n")
        return path.read_text().strip()

    def app_endpoints(self) -> tuple[Endpoint, Endpoint]:
        return Endpoint(self.node_host, self.pg_node_port), Endpoint(
            self.node_host, self.redis_node_port
        )

    def status_lines(self) -> list[str]:
        cluster = self.cluster()
        out = []
        for api, kind in (("v1", "Pod"), ("v1", "Service"), ("v1", "PersistentVolumeClaim")):
            for obj in cluster.list(api, kind, self.namespace):
                out.append(f"{kind:<22} {obj['metadata']['name']:<28} {_summary(kind, obj)}")
        return out or [f"nothing in namespace {self.namespace}"]

    def logs(self, component: str, lines: int) -> str:
        return self.cluster().pod_logs(self.namespace, f"{component}-0", tail_lines=lines)

    def probe_reach(
        self, command: list[str], v1_major: int, timeout: float, log: Log
    ) -> ProbeOutcome:
        """A probe pod in v2's namespace, in v2's PostgreSQL image, runs ``command`` (no
        credential in it: hosts and ports only); it is deleted afterwards."""
        params = self.cluster_params(v1_major, {"postgres": "", "redis": ""})
        image = postgres_image(params.postgres_major)
        cluster = self.cluster()
        cluster.apply(self._namespace())  # the first run: nothing was applied to v2 yet
        pod = probe_pod(self.namespace, image, command, timeout)
        return run_probe(cluster, pod, timeout, log)

    def stop(self, log: Log) -> list[str]:
        cluster = self.cluster()
        for name in STATEFULSETS:
            cluster.scale("StatefulSet", name, self.namespace, 0)
            log(f"Scaled StatefulSet {name} to 0")
        wait_scaled_down(cluster, self.namespace, STATEFULSETS, self.ready_timeout, log)
        return [f"StatefulSet {self.namespace}/{name} scaled to 0" for name in STATEFULSETS]


def _summary(kind: str, obj: dict[str, object]) -> str:
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    if kind == "Pod":
        statuses = status.get("containerStatuses") or []  # type: ignore[union-attr]
        ready = sum(1 for c in statuses if c.get("ready"))
        return f"{status.get('phase', '?')} ready {ready}/{len(statuses)}"  # type: ignore[union-attr]
    if kind == "Service":
        ports = [f"{p.get('port')}->{p.get('nodePort', '-')}" for p in spec.get("ports", [])]  # type: ignore[union-attr]
        return f"{spec.get('type', 'ClusterIP')} {' '.join(ports)}"  # type: ignore[union-attr]
    return str(status.get("phase", "?"))  # type: ignore[union-attr]
