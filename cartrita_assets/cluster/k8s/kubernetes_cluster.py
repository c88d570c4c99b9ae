"""`KubernetesCluster`: the `Cluster` seam over the official ``kubernetes`` client.

Server-side apply goes through ``kubernetes.dynamic.DynamicClient``, logs through
``CoreV1Api``; API errors become `ClusterError` subclasses (see `translate_api_error`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from urllib3.exceptions import HTTPError

from cartrita_assets.cluster.k8s.client_config import load_api_client
from cartrita_assets.cluster.k8s.errors import (
    ClusterError,
    _identity,
    _require_namespace,
    secret_values,
    translate_api_error,
)
from cartrita_assets.cluster.k8s.objects import (
    FIELD_MANAGER,
    Obj,
    ObjList,
    _involved_name,
    describe,
    sort_events,
)

# Where an object of a namespace that does not exist yet is dry-run created instead.
DRY_RUN_NAMESPACE = "default"

# --------------------------------------------------------------------------- the real cluster


class KubernetesCluster:
    """A real API server, through the official ``kubernetes`` client.

    Attributes:
        source: where the configuration came from, for logs (never contains a credential).
    """

    def __init__(self, api_client: k8s_client.ApiClient, source: str = "") -> None:
        """Wrap an ``ApiClient``; discovery happens on first use, not here.

        Args:
            api_client: a configured ``kubernetes.client.ApiClient``.
            source: where its configuration came from, for messages.
        """
        self._api = api_client
        self._dynamic_client: DynamicClient | None = None
        self.source = source or "the given ApiClient"

    @classmethod
    def from_environment(
        cls, kubeconfig: str | None = None, context: str | None = None
    ) -> KubernetesCluster:
        """A cluster bound to the first configuration that loads (see `load_api_client`).

        Args:
            kubeconfig: path of a kubeconfig file to use instead of the environment.
            context: a kubeconfig context; None means the file's current context.

        Raises:
            ClusterError: no configuration works; the message lists what was tried.
        """
        return cls(*load_api_client(kubeconfig, context))

    # -- plumbing

    def _dynamic(self) -> DynamicClient:
        if self._dynamic_client is None:
            with self._errors("discover the API server's resources"):
                self._dynamic_client = DynamicClient(self._api)
        return self._dynamic_client

    def _resource(self, api_version: str, kind: str) -> Any:
        dynamic = self._dynamic()
        with self._errors(f"look up {kind} in {api_version}"):
            try:
                return dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise ClusterError(
                    f"The API server ({self.source}) does not serve {kind} in {api_version}.",
                    status=404,
                ) from None

    @contextmanager
    def _errors(self, action: str, obj: Obj | None = None) -> Iterator[None]:
        try:
            yield
        except ApiException as exc:
            raise translate_api_error(exc, action, secret_values(obj)) from None
        except (HTTPError, OSError) as exc:
            raise ClusterError(
                f"Cannot {action}: the Kubernetes API server at {self._api.configuration.host} "
                f"({self.source}) is unreachable ({type(exc).__name__}). Check the network, "
                "the kubeconfig's server address and that the cluster is running."
            ) from None

    # -- the Cluster protocol

    def apply(self, obj: Obj, *, field_manager: str = FIELD_MANAGER) -> Obj:
        """Server-side apply ``obj`` (force=False).

        Args:
            obj: a complete object: apiVersion, kind, metadata.name (and namespace).
            field_manager: the manager to apply as; `FIELD_MANAGER` unless testing conflicts.

        Returns:
            The live object after the apply.
        """
        api_version, kind, name, namespace = _identity(obj)
        resource = self._resource(api_version, kind)
        if resource.namespaced:
            namespace = _require_namespace(kind, name, namespace)
        with self._errors(f"apply {describe(kind, name, namespace)}", obj):
            live = self._dynamic().server_side_apply(
                resource,
                body=obj,
                name=name,
                namespace=namespace if resource.namespaced else None,
                field_manager=field_manager,
                force_conflicts=False,
            )
        return live.to_dict()

    def dry_run(self, obj: Obj, *, as_new: bool = False) -> None:
        """Have the server validate ``obj`` as `apply` would send it, changing nothing.

        In an existing namespace (or for a cluster-scoped kind) this is a server-side apply with
        ``dryRun=All``, so conflicts and immutable fields are checked too. When the namespace
        does not exist yet, every object in it would be created: the object is dry-run created
        in ``default`` under a generated name, which the server validates (and admits) alike.

        Args:
            obj: a complete object.
            as_new: validate it as a new object even when one of that name exists (for an
                object the run only renders, such as a Job whose template is immutable).

        Raises:
            ClusterError: the server refuses the object; nothing was changed.
        """
        api_version, kind, name, namespace = _identity(obj)
        resource = self._resource(api_version, kind)
        action = f"validate {describe(kind, name, namespace)} (server-side dry run)"
        with self._errors(action, obj):
            if not resource.namespaced:
                self._dynamic().server_side_apply(
                    resource, body=obj, name=name, field_manager=FIELD_MANAGER,
                    force_conflicts=False, dry_run="All",
                )  # fmt: skip
            elif self._namespace_exists(namespace) and not as_new:
                self._dynamic().server_side_apply(
                    resource, body=obj, name=name, namespace=namespace,
                    field_manager=FIELD_MANAGER, force_conflicts=False, dry_run="All",
                )  # fmt: skip
            else:
                self._dry_run_create(resource, obj, name, namespace)

    def _dry_run_create(self, resource: Any, obj: Obj, name: str, namespace: str | None) -> None:
        where = namespace if self._namespace_exists(namespace) else DRY_RUN_NAMESPACE
        stand_in = copy.deepcopy(obj)
        meta = stand_in["metadata"]
        meta.pop("name")
        meta["generateName"] = name[:50] + "-"  # never collides with what exists there
        meta["namespace"] = where
        self._dynamic().create(
            resource, body=stand_in, namespace=where, dry_run="All", field_manager=FIELD_MANAGER
        )

    def _namespace_exists(self, namespace: str | None) -> bool:
        if not namespace:
            return False
        try:
            return self.get("v1", "Namespace", namespace, None) is not None
        except ClusterError as exc:
            if exc.status == 403:  # may not read Namespaces: it is theirs, so it exists
                return True
            raise

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        """The live object, or None when the server answers 404.

        Args:
            api_version: e.g. ``apps/v1``.
            kind: e.g. ``StatefulSet``.
            name: the object's name.
            namespace: its namespace, None for cluster-scoped kinds.

        Returns:
            The object as a plain dict, or None.
        """
        resource = self._resource(api_version, kind)
        try:
            with self._errors(f"read {describe(kind, name, namespace)}"):
                return self._dynamic().get(resource, name=name, namespace=namespace).to_dict()
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        """Delete (background propagation; a Namespace then terminates asynchronously).

        Args:
            api_version: e.g. ``v1``.
            kind: e.g. ``Secret``.
            name: the object's name.
            namespace: its namespace, None for cluster-scoped kinds.

        Returns:
            True when the server accepted the deletion, False when the object did not exist.
        """
        resource = self._resource(api_version, kind)
        try:
            with self._errors(f"delete {describe(kind, name, namespace)}"):
                self._dynamic().delete(resource, name=name, namespace=namespace)
        except ClusterError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def scale(self, kind: str, name: str, namespace: str, replicas: int) -> None:
        """Merge-patch ``spec.replicas`` of the apps/v1 scale subresource.

        Args:
            kind: ``StatefulSet`` (or another apps/v1 kind with a scale subresource).
            name: the object's name.
            namespace: its namespace.
            replicas: the wanted replica count.
        """
        resource = self._resource("apps/v1", kind)
        scale = resource.subresources.get("scale")
        if scale is None:
            raise ClusterError(f"{kind} in apps/v1 has no scale subresource.", status=404)
        with self._errors(f"scale {describe(kind, name, namespace)} to {replicas}"):
            self._dynamic().patch(
                scale,
                body={"spec": {"replicas": replicas}},
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                field_manager=FIELD_MANAGER,
            )

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str | None = None
    ) -> ObjList:
        """Objects of a kind in a namespace.

        Args:
            api_version: e.g. ``v1``.
            kind: e.g. ``Pod``.
            namespace: the namespace to list.
            label_selector: e.g. ``app=postgres``; None lists all.

        Returns:
            The items, each with apiVersion and kind filled in.
        """
        resource = self._resource(api_version, kind)
        with self._errors(f"list {kind} in namespace {namespace}"):
            result = self._dynamic().get(
                resource, namespace=namespace, label_selector=label_selector
            )
        return list(result.to_dict().get("items") or [])

    def events_for(self, namespace: str, name_prefix: str) -> ObjList:
        """core/v1 Events of objects whose name starts with ``name_prefix``.

        Args:
            namespace: where the objects live.
            name_prefix: e.g. ``postgres`` (matches the StatefulSet and ``postgres-0``).

        Returns:
            The events, oldest first.
        """
        events = self.list("v1", "Event", namespace)
        return sort_events(e for e in events if _involved_name(e).startswith(name_prefix))

    def pod_logs(self, namespace: str, pod: str, tail_lines: int = 100) -> str:
        """The last ``tail_lines`` lines of a pod's (only or default) container.

        Args:
            namespace: the pod's namespace.
            pod: the pod's name.
            tail_lines: how many lines from the end.

        Returns:
            The log text.
        """
        try:
            with self._errors(f"read the logs of pod {namespace}/{pod}"):
                return str(
                    k8s_client.CoreV1Api(self._api).read_namespaced_pod_log(
                        name=pod, namespace=namespace, tail_lines=tail_lines
                    )
                )
        except ClusterError as exc:
            raise self._log_failure(namespace, pod, exc) from None

    def _log_failure(self, namespace: str, pod: str, exc: ClusterError) -> ClusterError:
        """Say which part failed: the pod is missing, or its node did not serve the log."""
        live = self.get("v1", "Pod", pod, namespace)
        if live is None:
            return ClusterError(
                f"Pod {namespace}/{pod} does not exist, so it has no logs: it has not been "
                "created yet or was scaled away (a rollback scales v2 to 0). "
                "`cartrita v2 status` lists the pods there are.",
                404,
            )
        phase = (live.get("status") or {}).get("phase", "unknown")
        node = (live.get("spec") or {}).get("nodeName") or "no node"
        return ClusterError(
            f"Cannot read the logs of pod {namespace}/{pod} (phase {phase}, on {node}): the API "
            f"server could not fetch them from the node's kubelet (HTTP {exc.status}). Check "
            "that the node is up and reachable from the API server.",
            exc.status,
        )
