"""The seam between this project and a Kubernetes API server.

`Cluster` is the small surface the assets use. `KubernetesCluster` is a thin layer over the
official client (server-side apply through ``kubernetes.dynamic.DynamicClient``, logs through
``CoreV1Api``) that turns API errors into `ClusterError` subclasses. `InMemoryCluster` is the
stand-in the unit tests drive: it keeps the server behaviours this project relies on (422 on an
invalid object, 409 on a field-manager conflict, immutable Secrets, the scale subresource,
404 for a missing namespace).

No error message ever carries the value of an object's ``data``/``stringData``/``binaryData``:
those values are redacted from every message built from a server's or a validator's answer.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from urllib3.exceptions import HTTPError

from cartrita_assets.errors import CartritaError
from cartrita_assets.secrets import redact

FIELD_MANAGER = "cartrita-assets"
VALIDATION_VERSION = "1.30.0"
SCALE_MANAGER = f'"{FIELD_MANAGER}" with subresource "scale"'
"""How `InMemoryCluster` names the owner of ``.spec.replicas`` after `Cluster.scale`."""

Obj = dict[str, Any]
ObjList = list[dict[str, Any]]
FieldPath = tuple[str, ...]
Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "StorageClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
)
SCALABLE_KINDS = frozenset({"StatefulSet", "Deployment", "ReplicaSet"})
_SECRET_SECTIONS = ("data", "stringData", "binaryData")
_MIN_REDACTED_LEN = 3
_IMMUTABLE_PATTERN = re.compile(
    r"immutable|updates to statefulset spec for fields other than", re.IGNORECASE
)
_INVALID_PATTERN = re.compile(
    r"failed to create typed patch object|strict decoding error|unknown field", re.IGNORECASE
)


class ClusterError(CartritaError):
    """The Kubernetes API refused or failed a request; the message says what and what to do.

    Attributes:
        status: the HTTP status the API server answered, when there was one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConflictError(ClusterError):
    """409: another field manager owns a field this apply wants to change."""


class InvalidObjectError(ClusterError):
    """422 (or a schema error): the object is not valid for the API server."""


class ImmutableError(ClusterError):
    """The change touches an immutable Secret/ConfigMap's data or an immutable field."""


class Cluster(Protocol):
    """What the assets need from a Kubernetes API server."""

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply ``obj`` as `FIELD_MANAGER` without forcing; return the live object."""
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


# --------------------------------------------------------------------------- helpers


def describe(kind: str, name: str, namespace: str | None) -> str:
    """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped), for messages."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def secret_values(obj: Obj | None) -> list[str]:
    """Values under ``data``/``stringData``/``binaryData`` (and their base64-decoded text).

    Args:
        obj: a Kubernetes object, or None.

    Returns:
        Every value of at least 3 characters that must never appear in a message.
    """
    values: list[str] = []
    for section in _SECRET_SECTIONS:
        entries = (obj or {}).get(section)
        if not isinstance(entries, dict):
            continue
        for value in entries.values():
            if value is None:
                continue
            text = value if isinstance(value, str) else str(value)
            values += [text, repr(value)]
            values += _decoded(text)
    return [v for v in values if len(v) >= _MIN_REDACTED_LEN]


def _decoded(text: str) -> list[str]:
    try:
        return [base64.b64decode(text, validate=True).decode()]
    except ValueError:
        return []


def _identity(obj: Obj) -> tuple[str, str, str, str | None]:
    """apiVersion, kind, name, namespace of an object to apply (InvalidObjectError if absent)."""
    meta = obj.get("metadata") or {}
    api_version, kind, name = obj.get("apiVersion"), obj.get("kind"), meta.get("name")
    if not (isinstance(api_version, str) and isinstance(kind, str) and isinstance(name, str)):
        raise InvalidObjectError(
            "Cannot apply an object without apiVersion, kind and metadata.name "
            f"(got apiVersion={api_version!r}, kind={kind!r}, name={name!r}).",
            status=400,
        )
    namespace = meta.get("namespace")
    return api_version, kind, name, namespace if isinstance(namespace, str) else None


def _require_namespace(kind: str, name: str, namespace: str | None) -> str:
    if not namespace:
        raise InvalidObjectError(
            f"{kind} {name} has no metadata.namespace; namespaced objects must name theirs.",
            status=400,
        )
    return namespace


def _server_message(body: object) -> str:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:300]
    return str(parsed.get("message", "")) if isinstance(parsed, dict) else body[:300]


def translate_api_error(
    exc: ApiException, action: str, secrets: Iterable[str] = ()
) -> ClusterError:
    """Turn an ``ApiException`` into the matching `ClusterError` subclass.

    Args:
        exc: the client's exception (``kubernetes.dynamic`` ones are subclasses).
        action: what was attempted, e.g. ``apply Secret data-stack/postgres``.
        secrets: values to redact from the server's message.

    Returns:
        ConflictError (409), ImmutableError (422 about an immutable field), InvalidObjectError
        (422, or a 400/500 schema error of server-side apply), else ClusterError; the message
        holds the status, the reason and the server's message, never ``str(exc)``.
    """
    status = int(exc.status) if exc.status else None
    reason = exc.reason or "no reason given"
    message = redact(_server_message(exc.body) or reason, secrets)
    head = f"Cannot {action}: HTTP {status} {reason}: {message}"
    if status == 409:
        return ConflictError(
            f"{head}. Another field manager owns these fields (see `kubectl get -o yaml "
            "--show-managed-fields`): make it stop managing them or align the values, then "
            f"apply again as {FIELD_MANAGER!r}.",
            status,
        )
    if status == 422 and _IMMUTABLE_PATTERN.search(message):
        return ImmutableError(
            f"{head}. The field cannot change in place: delete and re-create the object "
            "(or use a new name).",
            status,
        )
    if status == 422 or _INVALID_PATTERN.search(message):
        return InvalidObjectError(f"{head}. Fix the manifest.", status)
    hints = {
        401: " Check the kubeconfig credentials.",
        403: " Check the RBAC permissions of the credentials in use.",
        404: " Check that the object and its namespace exist.",
    }
    return ClusterError(head + "." + hints.get(status or 0, ""), status)


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
        """Find a configuration the way lightkube does.

        An explicit ``kubeconfig`` is used alone (it never falls back to another cluster).
        Otherwise: the in-cluster service account (when ``KUBERNETES_SERVICE_HOST`` is set and
        no ``context`` is asked for), then ``$KUBECONFIG`` (alone, when set), then
        ``~/.kube/config``.

        Args:
            kubeconfig: path of a kubeconfig file to use instead of the environment.
            context: a kubeconfig context; None means the file's current context.

        Returns:
            A cluster bound to the first configuration that loads.

        Raises:
            ClusterError: no configuration works; the message lists what was tried.
        """
        if kubeconfig:
            return cls._from_kubeconfig(kubeconfig, context, "the kubeconfig given")
        tried: list[str] = []
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
            try:
                return cls._from_incluster()
            except ClusterError as exc:
                tried.append(str(exc))
        elif context:
            tried.append("in-cluster service account: skipped, a kubeconfig context was asked for")
        else:
            tried.append("in-cluster service account: KUBERNETES_SERVICE_HOST is not set")
        env = os.environ.get("KUBECONFIG")
        if env:
            return cls._from_kubeconfig(env, context, "$KUBECONFIG", tried)
        tried.append("$KUBECONFIG: not set")
        default = Path.home() / ".kube" / "config"
        if default.is_file():
            return cls._from_kubeconfig(str(default), context, str(default), tried)
        tried.append(f"{default}: does not exist")
        raise ClusterError(_no_config_message(tried))

    @classmethod
    def _from_incluster(cls) -> KubernetesCluster:
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except Exception as exc:  # the loader raises ConfigException and OS errors
            raise ClusterError(f"in-cluster service account: {_short(exc)}") from None
        return cls(k8s_client.ApiClient(configuration), "in-cluster service account")

    @classmethod
    def _from_kubeconfig(
        cls, path: str, context: str | None, label: str, tried: list[str] | None = None
    ) -> KubernetesCluster:
        configuration = k8s_client.Configuration()
        where = f"{label} ({path})" if label != path else path
        source = f"kubeconfig {path}" + (f" context {context}" if context else "")
        try:
            k8s_config.load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except Exception as exc:  # ConfigException, OSError, YAML errors
            failed = [*(tried or []), f"{where}: {_short(exc)}"]
            raise ClusterError(_no_config_message(failed)) from None
        return cls(k8s_client.ApiClient(configuration), source)

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
        with self._errors(f"read the logs of pod {namespace}/{pod}"):
            return str(
                k8s_client.CoreV1Api(self._api).read_namespaced_pod_log(
                    name=pod, namespace=namespace, tail_lines=tail_lines
                )
            )


def _short(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"


def _no_config_message(tried: list[str]) -> str:
    return (
        "No Kubernetes configuration works. Tried: "
        + "; ".join(tried)
        + ". Pass a kubeconfig path, set KUBECONFIG, or run in a pod with a service account."
    )


def _involved_name(event: Obj) -> str:
    return str((event.get("involvedObject") or {}).get("name") or "")


def _event_time(event: Obj) -> str:
    meta = event.get("metadata") or {}
    stamp = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or meta.get("creationTimestamp")
        or ""
    )
    return str(stamp)[:19]  # seconds precision: eventTime has microseconds, the others not


def sort_events(events: Iterable[Obj]) -> ObjList:
    """Events ordered oldest first by their most recent timestamp.

    Args:
        events: core/v1 Event dicts.

    Returns:
        A new list, newest last.
    """
    return sorted(events, key=_event_time)


# --------------------------------------------------------------------------- the stand-in

_MISSING = object()
_IDENTITY_PATHS: frozenset[FieldPath] = frozenset(
    {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}
)
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def _leaves(node: Any, prefix: FieldPath = ()) -> dict[FieldPath, Any]:
    """Field path -> value for every leaf; lists and empty maps are leaves (atomic)."""
    if isinstance(node, dict) and node:
        out: dict[FieldPath, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, (*prefix, str(key))))
        return out
    return {prefix: node}


def _lookup(node: Any, path: FieldPath) -> Any:
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _assign(node: Obj, path: FieldPath, value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if value == {} and isinstance(node.get(path[-1]), dict):
        return  # an empty map in the config keeps what others put there
    node[path[-1]] = copy.deepcopy(value)


def _remove(node: Obj, path: FieldPath) -> None:
    parents = []
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            return
        parents.append((node, part))
        node = node[part]
    node.pop(path[-1], None)
    for parent, part in reversed(parents):  # prune maps left empty
        if parent[part] == {}:
            del parent[part]


def _overlaps(a: FieldPath, b: FieldPath) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def _dotted(path: FieldPath) -> str:
    return "." + ".".join(path)


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            ok = labels.get(key) == value
        elif term.startswith("!"):
            ok = term[1:].strip() not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True


class InMemoryCluster:
    """A stand-in API server with the semantics this project depends on.

    Simplifications (documented, deliberate):

    * Field ownership is tracked per leaf field path; lists are atomic (one owner for the whole
      list, where the real server merges lists such as containers by key). A field owned by
      another manager conflicts only when this apply changes its value (as on the server);
      fields an applier stops sending are removed unless another manager owns them.
    * ``stringData`` is folded into ``data`` (base64) before anything else, as the server does;
      ``status`` in an applied object is ignored. Only ``spec.replicas`` is defaulted (to 1).
    * There is no controller: StatefulSet status changes only through `set_ready`; deleting a
      Namespace removes its objects at once.
    * Validation is kubernetes-validate's strict JSON schema for Kubernetes 1.30.0 (types,
      unknown fields, required fields), not the server's semantic validation.
    """

    def __init__(self, namespaces: Iterable[str] = ("default",)) -> None:
        """Start empty except for the given namespaces.

        Args:
            namespaces: Namespaces that exist from the start.
        """
        self._objects: dict[Key, Obj] = {}
        self._managers: dict[Key, dict[str, set[FieldPath]]] = {}
        self._events: ObjList = []
        self._logs: dict[tuple[str, str], str] = {}
        self._versions = itertools.count(1)
        self._ticks = itertools.count()
        self._epoch = datetime(2025, 1, 1, tzinfo=UTC)
        for namespace in namespaces:
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    # -- the Cluster protocol

    def apply(self, obj: Obj, *, field_manager: str = FIELD_MANAGER) -> Obj:
        """Apply like server-side apply without force.

        Args:
            obj: a complete object.
            field_manager: the manager applying (another name simulates a second client).

        Returns:
            A copy of the live object.

        Raises:
            InvalidObjectError: the object fails strict schema validation (the 422 analogue).
            ConflictError: it changes a field another manager owns.
            ImmutableError: it changes the data of an immutable Secret or ConfigMap.
            ClusterError: unknown kind, or its namespace does not exist (404).
        """
        api_version, kind, name, namespace = self._checked(obj)
        key: Key = (api_version, kind, namespace or "", name)
        config = self._normalised(obj)
        fields = {p: v for p, v in _leaves(config).items() if p not in _IDENTITY_PATHS}
        live = self._objects.get(key)
        managers = self._managers.setdefault(key, {})
        action = f"apply {describe(kind, name, namespace)}"
        self._check_conflicts(action, live or {}, fields, managers, field_manager)
        new = self._merged(live, config, fields, managers, field_manager)
        if live is not None:
            self._check_immutable(action, live, new)
        managers[field_manager] = set(fields)
        self._store(key, live, new)
        return copy.deepcopy(self._objects[key])

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        """A copy of the stored object, or None.

        Args:
            api_version: e.g. ``apps/v1``.
            kind: e.g. ``StatefulSet``.
            name: the object's name.
            namespace: its namespace, None for cluster-scoped kinds.

        Returns:
            The object or None.
        """
        found = self._objects.get((api_version, kind, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        """Remove an object (a Namespace takes everything in it along, immediately).

        Args:
            api_version: e.g. ``v1``.
            kind: e.g. ``Namespace``.
            name: the object's name.
            namespace: its namespace, None for cluster-scoped kinds.

        Returns:
            False when it did not exist.
        """
        key: Key = (api_version, kind, namespace or "", name)
        if self._objects.pop(key, None) is None:
            return False
        self._managers.pop(key, None)
        if kind == "Namespace":
            for other in [k for k in self._objects if k[2] == name]:
                del self._objects[other]
                self._managers.pop(other, None)
            self._events = [e for e in self._events if e["metadata"]["namespace"] != name]
        return True

    def scale(self, kind: str, name: str, namespace: str, replicas: int) -> None:
        """Set spec.replicas as a scale-subresource update would.

        The scale update takes ownership of ``.spec.replicas`` (as `SCALE_MANAGER`) when the
        value changes, so a later apply of a different ``spec.replicas`` conflicts, as on a real
        server.

        Args:
            kind: ``StatefulSet``, ``Deployment`` or ``ReplicaSet``.
            name: the object's name.
            namespace: its namespace.
            replicas: the wanted replica count (>= 0).
        """
        key: Key = ("apps/v1", kind, namespace, name)
        action = f"scale {describe(kind, name, namespace)} to {replicas}"
        if kind not in SCALABLE_KINDS:
            raise ClusterError(f"Cannot {action}: {kind} has no scale subresource.", 404)
        live = self._objects.get(key)
        if live is None:
            raise ClusterError(f"Cannot {action}: HTTP 404 NotFound: it does not exist.", 404)
        if replicas < 0:
            raise InvalidObjectError(
                f"Cannot {action}: HTTP 422 Invalid: spec.replicas must be >= 0.", 422
            )
        if live["spec"].get("replicas") == replicas:
            return
        new = copy.deepcopy(live)
        new["spec"]["replicas"] = replicas
        for owned in self._managers.setdefault(key, {}).values():
            owned.discard(("spec", "replicas"))
        self._managers[key].setdefault(SCALE_MANAGER, set()).add(("spec", "replicas"))
        self._store(key, live, new)

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str | None = None
    ) -> ObjList:
        """Copies of the objects of a kind in a namespace, by name.

        Args:
            api_version: e.g. ``v1``.
            kind: e.g. ``Pod``.
            namespace: the namespace.
            label_selector: equality-based selector, or None.

        Returns:
            The matching objects.
        """
        found = [
            obj
            for (av, k, ns, _), obj in sorted(self._objects.items())
            if (av, k, ns) == (api_version, kind, namespace)
            and _matches((obj.get("metadata") or {}).get("labels") or {}, label_selector)
        ]
        return copy.deepcopy(found)

    def events_for(self, namespace: str, name_prefix: str) -> ObjList:
        """Events added with `add_event` for matching objects, newest last.

        Args:
            namespace: the namespace.
            name_prefix: prefix of the involved object's name.

        Returns:
            Copies of the events.
        """
        found = [
            e
            for e in self._events
            if e["metadata"]["namespace"] == namespace and _involved_name(e).startswith(name_prefix)
        ]
        return copy.deepcopy(sort_events(found))

    def pod_logs(self, namespace: str, pod: str, tail_lines: int = 100) -> str:
        """The last lines of the log given to `add_pod`.

        Args:
            namespace: the pod's namespace.
            pod: its name.
            tail_lines: how many lines from the end.

        Returns:
            The log text.
        """
        if ("v1", "Pod", namespace, pod) not in self._objects:
            raise ClusterError(
                f"Cannot read the logs of pod {namespace}/{pod}: HTTP 404 NotFound.", 404
            )
        lines = self._logs.get((namespace, pod), "").splitlines()
        return "\n".join(lines[-tail_lines:] if tail_lines > 0 else [])

    # -- test helpers

    def set_ready(
        self,
        kind: str,
        name: str,
        namespace: str,
        ready_replicas: int,
        *,
        replicas: int | None = None,
        updated_replicas: int | None = None,
    ) -> None:
        """Play the controller: write the status of an apps/v1 workload.

        Args:
            kind: e.g. ``StatefulSet``.
            name: its name.
            namespace: its namespace.
            ready_replicas: status.readyReplicas (and availableReplicas).
            replicas: status.replicas (pods that exist); defaults to ``ready_replicas``.
            updated_replicas: status.updatedReplicas; defaults to ``ready_replicas``.
        """
        obj = self._objects.get(("apps/v1", kind, namespace, name))
        if obj is None:
            raise ClusterError(f"{describe(kind, name, namespace)} does not exist.", 404)
        obj["status"] = {
            "replicas": ready_replicas if replicas is None else replicas,
            "readyReplicas": ready_replicas,
            "availableReplicas": ready_replicas,
            "currentReplicas": ready_replicas,
            "updatedReplicas": ready_replicas if updated_replicas is None else updated_replicas,
            "observedGeneration": obj["metadata"].get("generation", 1),
        }
        obj["metadata"]["resourceVersion"] = str(next(self._versions))

    def add_event(
        self,
        namespace: str,
        name: str,
        reason: str,
        message: str,
        type: str = "Warning",
        kind: str = "Pod",
    ) -> Obj:
        """Record an Event about an object (newer than every earlier one).

        Args:
            namespace: the namespace.
            name: the involved object's name, e.g. ``postgres-0``.
            reason: e.g. ``ImagePullBackOff``.
            message: the event's message.
            type: ``Warning`` or ``Normal``.
            kind: the involved object's kind.

        Returns:
            The event.
        """
        tick = next(self._ticks)
        stamp = (self._epoch + timedelta(seconds=tick)).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{tick:08x}", "namespace": namespace},
            "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
            "reason": reason,
            "message": message,
            "type": type,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
        }
        self._events.append(event)
        return copy.deepcopy(event)

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        phase: str = "Running",
        ready: bool = True,
        logs: str = "",
    ) -> Obj:
        """Store a Pod (no validation, no namespace check) and its log text.

        Args:
            namespace: the namespace.
            name: the pod's name.
            labels: its labels.
            phase: status.phase.
            ready: whether its Ready condition is True.
            logs: what `pod_logs` returns for it.

        Returns:
            The pod.
        """
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": {"containers": [{"name": "main", "image": "stand-in"}]},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        self._objects[("v1", "Pod", namespace, name)] = pod
        self._logs[(namespace, name)] = logs
        return copy.deepcopy(pod)

    def field_managers(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, list[str]]:
        """Who owns which fields of an object (dotted paths), for tests.

        Args:
            api_version: e.g. ``v1``.
            kind: e.g. ``ConfigMap``.
            name: the object's name.
            namespace: its namespace.

        Returns:
            manager -> sorted dotted field paths.
        """
        managers = self._managers.get((api_version, kind, namespace or "", name), {})
        return {m: sorted(_dotted(p) for p in owned) for m, owned in managers.items()}

    # -- internals

    def _checked(self, obj: Obj) -> tuple[str, str, str, str | None]:
        api_version, kind, name, namespace = _identity(obj)
        self._validate(obj, api_version, kind, name, namespace)
        if kind in CLUSTER_SCOPED_KINDS:
            return api_version, kind, name, None
        namespace = _require_namespace(kind, name, namespace)
        if ("v1", "Namespace", "", namespace) not in self._objects:
            raise ClusterError(
                f"Cannot apply {describe(kind, name, namespace)}: HTTP 404 NotFound: "
                f'namespaces "{namespace}" not found. Create the Namespace first.',
                404,
            )
        return api_version, kind, name, namespace

    @staticmethod
    def _validate(obj: Obj, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        import kubernetes_validate
        from kubernetes_validate.utils import SchemaNotFoundError

        what = describe(kind, name, namespace)
        try:
            kubernetes_validate.validate(obj, VALIDATION_VERSION, strict=True)
        except SchemaNotFoundError:
            raise ClusterError(
                f"Cannot apply {what}: the API server does not serve {kind} in {api_version}.",
                404,
            ) from None
        except kubernetes_validate.ValidationError as exc:
            at = _dotted(tuple(str(p) for p in exc.path)) if exc.path else "the object"
            reason = redact(exc.message, secret_values(obj))
            raise InvalidObjectError(
                f"Cannot apply {what}: HTTP 422 Invalid: {at}: {reason}. Fix the manifest.", 422
            ) from None
        _check_base64(obj, what)

    @staticmethod
    def _normalised(obj: Obj) -> Obj:
        config = copy.deepcopy(obj)
        config.pop("status", None)
        meta = config.setdefault("metadata", {})
        for field in _SERVER_METADATA:
            meta.pop(field, None)
        string_data = config.pop("stringData", None) or {}
        if string_data:
            data = config.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        return config

    @staticmethod
    def _check_conflicts(
        action: str,
        live: Obj,
        fields: dict[FieldPath, Any],
        managers: dict[str, set[FieldPath]],
        applier: str,
    ) -> None:
        conflicts = sorted(
            (manager, _dotted(path))
            for manager, owned in managers.items()
            if manager != applier
            for path, value in fields.items()
            if _lookup(live, path) != value and any(_overlaps(path, o) for o in owned)
        )
        if not conflicts:
            return
        detail = ", ".join(
            f'conflict with "{m}": {p}' if not m.startswith('"') else f"conflict with {m}: {p}"
            for m, p in conflicts
        )
        raise ConflictError(
            f"Cannot {action} as {applier!r}: HTTP 409 Conflict: Apply failed with "
            f"{len(conflicts)} conflict(s): {detail}. Another field manager owns these fields: "
            "make it stop managing them or align the values, then apply again.",
            409,
        )

    @staticmethod
    def _merged(
        live: Obj | None,
        config: Obj,
        fields: dict[FieldPath, Any],
        managers: dict[str, set[FieldPath]],
        applier: str,
    ) -> Obj:
        new = copy.deepcopy(live) if live is not None else {}
        others: set[FieldPath] = set()
        for manager, owned in managers.items():
            if manager != applier:
                others |= owned
        for path in managers.get(applier, set()) - fields.keys() - others:
            _remove(new, path)
        for path, value in fields.items():
            _assign(new, path, value)
        new["apiVersion"], new["kind"] = config["apiVersion"], config["kind"]
        new.setdefault("metadata", {}).update(
            {k: config["metadata"][k] for k in ("name", "namespace") if k in config["metadata"]}
        )
        if new["kind"] in SCALABLE_KINDS and isinstance(new.get("spec"), dict):
            new["spec"].setdefault("replicas", 1)
        return new

    @staticmethod
    def _check_immutable(action: str, live: Obj, new: Obj) -> None:
        if live.get("kind") not in {"Secret", "ConfigMap"} or live.get("immutable") is not True:
            return
        changed = [f for f in ("data", "binaryData", "immutable") if live.get(f) != new.get(f)]
        if changed:
            raise ImmutableError(
                f"Cannot {action}: HTTP 422 Invalid: {', '.join(changed)}: Forbidden: field is "
                "immutable when `immutable` is set. Delete and re-create the object (or use a "
                "new name) to change it.",
                422,
            )

    def _store(self, key: Key, live: Obj | None, new: Obj) -> None:
        if live is not None and new == live:
            return  # a no-op apply changes nothing, not even resourceVersion
        meta = new.setdefault("metadata", {})
        if live is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if "spec" in new:
                meta["generation"] = 1
            if new["kind"] in SCALABLE_KINDS:
                new["status"] = {"replicas": 0, "availableReplicas": 0}
        elif "spec" in new and new.get("spec") != live.get("spec"):
            meta["generation"] = int(meta.get("generation", 1)) + 1
        meta["resourceVersion"] = str(next(self._versions))
        self._objects[key] = new


def _check_base64(obj: Obj, what: str) -> None:
    if obj.get("kind") != "Secret":
        return
    for key, value in (obj.get("data") or {}).items():
        try:
            base64.b64decode(value or "", validate=True)
        except ValueError:
            raise InvalidObjectError(
                f"Cannot apply {what}: HTTP 422 Invalid: .data.{key}: not valid base64 "
                "(put plain text under stringData instead).",
                422,
            ) from None
