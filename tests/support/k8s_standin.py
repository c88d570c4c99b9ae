"""`InMemoryCluster`: an in-memory stand-in for a Kubernetes API server, for the unit tests.

It implements the `cartrita_assets.cluster.k8s.cluster.Cluster` protocol and keeps the server
behaviours this project relies on (422 on an invalid object, 409 on a field-manager conflict,
immutable Secrets, the scale subresource, 404 for a missing namespace).

No error message ever carries the value of an object's ``data``/``stringData``/``binaryData``:
those values are redacted from every message built from a server's or a validator's answer.
"""

from __future__ import annotations

import base64
import copy
import itertools
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from cartrita_assets.cluster.k8s.errors import (
    ClusterError,
    ConflictError,
    ImmutableError,
    InvalidObjectError,
    _identity,
    _require_namespace,
    secret_values,
)
from cartrita_assets.cluster.k8s.objects import (
    FIELD_MANAGER,
    Obj,
    ObjList,
    _involved_name,
    describe,
    sort_events,
)
from cartrita_assets.redaction import redact

VALIDATION_VERSION = "1.30.0"
SCALE_MANAGER = f'"{FIELD_MANAGER}" with subresource "scale"'
"""How `InMemoryCluster` names the owner of ``.spec.replicas`` after `Cluster.scale`."""

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

    def dry_run(self, obj: Obj, *, as_new: bool = False) -> None:
        """`apply` with nothing kept; a missing namespace counts as one about to be created,
        and ``as_new`` validates the object as if none of its name existed."""
        saved = copy.deepcopy((self._objects, self._managers, self._events))
        try:
            if as_new:
                api_version, kind, name, namespace = _identity(obj)
                self._objects.pop((api_version, kind, namespace or "", name), None)
                self._managers.pop((api_version, kind, namespace or "", name), None)
            namespace = (obj.get("metadata") or {}).get("namespace")
            if namespace and obj.get("kind") not in CLUSTER_SCOPED_KINDS:
                self._objects.setdefault(
                    ("v1", "Namespace", "", namespace),
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                )
            self.apply(obj)
        finally:
            self._objects, self._managers, self._events = saved

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
