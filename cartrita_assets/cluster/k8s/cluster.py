"""The seam between this project and a Kubernetes API server.

`Cluster` is the small surface the assets use. `KubernetesCluster` is a thin layer over the
official client (server-side apply through ``kubernetes.dynamic.DynamicClient``, logs through
``CoreV1Api``) that turns API errors into `ClusterError` subclasses. `InMemoryCluster`, the
stand-in the unit tests drive, lives with the test support (``tests/support/k8s_standin.py``).

This module is the seam's public face: the `Cluster` protocol, plus the names of
``objects`` (shared vocabulary), ``errors`` (errors and their translation) and
``kubernetes_cluster`` (the real cluster), re-exported.

No error message ever carries the value of an object's ``data``/``stringData``/``binaryData``:
those values are redacted from every message built from a server's or a validator's answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from cartrita_assets.cluster.k8s.errors import (
    ClusterError,
    ConflictError,
    ImmutableError,
    InvalidObjectError,
    secret_values,
    translate_api_error,
)
from cartrita_assets.cluster.k8s.objects import FIELD_MANAGER, Obj, ObjList, describe, sort_events

if TYPE_CHECKING:
    from cartrita_assets.cluster.k8s.kubernetes_cluster import KubernetesCluster


def __getattr__(name: str) -> Any:
    """``KubernetesCluster`` on first use: the official client takes half a second to import,
    which every process would pay (the CLI, each run) even when no cluster is ever reached."""
    if name == "KubernetesCluster":
        from cartrita_assets.cluster.k8s.kubernetes_cluster import KubernetesCluster

        return KubernetesCluster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FIELD_MANAGER",
    "Cluster",
    "ClusterError",
    "ConflictError",
    "ImmutableError",
    "InvalidObjectError",
    "KubernetesCluster",
    "Obj",
    "ObjList",
    "describe",
    "secret_values",
    "sort_events",
    "translate_api_error",
]


class Cluster(Protocol):
    """What the assets need from a Kubernetes API server."""

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply ``obj`` as `FIELD_MANAGER` without forcing; return the live object."""
        ...

    def dry_run(self, obj: Obj, *, as_new: bool = False) -> None:
        """Have the server validate ``obj`` as `apply` would (``as_new``: as a new object),
        changing nothing."""
        ...

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        """The live object, or None when it does not exist."""
        ...

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        """Delete the object; False when it did not exist."""
        ...

    def scale(self, kind: str, name: str, namespace: str, replicas: int) -> None:
        """Set replicas through the apps/v1 scale subresource."""
        ...

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str | None = None
    ) -> ObjList:
        """Objects of a kind in a namespace, optionally filtered by a label selector."""
        ...

    def events_for(self, namespace: str, name_prefix: str) -> ObjList:
        """core/v1 Events whose involvedObject name starts with the prefix, newest last."""
        ...

    def pod_logs(self, namespace: str, pod: str, tail_lines: int = 100) -> str:
        """The last lines of a pod's log."""
        ...
