"""The errors of the cluster seam, and how API errors and invalid objects turn into them.

No error message ever carries the value of an object's ``data``/``stringData``/``binaryData``:
those values are redacted from every message built from a server's or a validator's answer.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cartrita_assets.cluster.k8s.objects import FIELD_MANAGER, Obj
from cartrita_assets.errors import CartritaError
from cartrita_assets.redaction import redact

if TYPE_CHECKING:  # the client is imported only where a real cluster is reached
    from kubernetes.client.exceptions import ApiException

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


# --------------------------------------------------------------------------- helpers


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


def _short(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"


def _no_config_message(tried: list[str]) -> str:
    return (
        "No Kubernetes configuration works. Tried: "
        + "; ".join(tried)
        + ". Pass a kubeconfig path, set KUBECONFIG, or run in a pod with a service account."
    )
