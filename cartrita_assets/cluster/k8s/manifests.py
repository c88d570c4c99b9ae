"""v2's Kubernetes objects: load k8s/pgvector-redis.yaml, patch it for a cluster, validate it.

The YAML file stays what a person applies with ``kubectl apply -k k8s/``; the code applies the
same objects with the values the migration decided (PostgreSQL major, storage, Secret names).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cartrita_assets.errors import CartritaError
from cartrita_assets.paths import data_path
from cartrita_assets.redis_copy.versions import ServerVersion

CLUSTER_MANIFEST = "pgvector-redis.yaml"
MIGRATE_JOB_MANIFEST = "job-db-migrate.yaml"
DEFAULT_NAMESPACE = "data-stack"  # the namespace the YAML files name; CARTRITA_NAMESPACE wins
PGVECTOR_REPOSITORY = "pgvector/pgvector"
REDIS_REPOSITORY = "redis"
MIN_PGVECTOR_MAJOR = 13  # the oldest major pgvector/pgvector publishes an image for

# The names the YAML file uses; render_cluster replaces them with the caller's (hash-suffixed) ones.
POSTGRES_SECRET = "cartrita-postgres"
REDIS_SECRET = "cartrita-redis"

KIND_ORDER = ["Namespace", "Secret", "ConfigMap", "Service", "StatefulSet", "Job"]
CLUSTER_SCOPED_KINDS = frozenset(
    {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}
)


class ManifestError(CartritaError, ValueError):
    """A Kubernetes object or a parameter for one is not acceptable; the message names the fix."""


@dataclass(frozen=True)
class ClusterParams:
    """What render_cluster patches into the objects of k8s/pgvector-redis.yaml."""

    namespace: str = DEFAULT_NAMESPACE
    postgres_major: int = 18  # the v2 image's PostgreSQL major; at least v1's
    storage_class: str | None = None  # None: the cluster's default StorageClass
    postgres_storage: str = "10Gi"
    redis_storage: str = "2Gi"
    postgres_node_port: int = 32432
    redis_node_port: int = 32379
    postgres_secret: str = POSTGRES_SECRET  # the caller passes the actual (hash-suffixed) names
    redis_secret: str = REDIS_SECRET
    redis_image: str = "redis:7.4-alpine"  # see redis_image(): at least v1's Redis


def redis_image(v1_version: str) -> str:
    """The Redis image for v1's Redis: its major.minor, and never older than 7.4.

    Args:
        v1_version: what v1 runs, e.g. ``Redis 7.0.15`` or ``valkey 9.1.2`` (compared by the
            Redis data model it implements); empty: v1 has no Redis.

    Returns:
        ``redis:<major>.<minor>-alpine``.
    """
    model = ServerVersion.parse(v1_version).data_model()[:2] if v1_version else (7, 4)
    major, minor = max(tuple(model), (7, 4))
    return f"{REDIS_REPOSITORY}:{major}.{minor}-alpine"


def postgres_image(major: int) -> str:
    """The pgvector image for a PostgreSQL major.

    Args:
        major: v2's PostgreSQL major (the same as v1's or newer).

    Returns:
        ``pgvector/pgvector:pg<major>``.

    Raises:
        ManifestError: pgvector publishes no image for that major.
    """
    if isinstance(major, bool) or not isinstance(major, int) or major < MIN_PGVECTOR_MAJOR:
        raise ManifestError(
            f"There is no {PGVECTOR_REPOSITORY} image for PostgreSQL {major!r}: images exist for "
            f"{MIN_PGVECTOR_MAJOR} and newer. Set postgres_major to {MIN_PGVECTOR_MAJOR} or newer "
            "(v2 may run a newer major than v1; the restore refuses only a downgrade)."
        )
    return f"{PGVECTOR_REPOSITORY}:pg{major}"


def load_objects(path: Path) -> list[dict[str, Any]]:
    """Read every object of a multi-document YAML file.

    Args:
        path: the YAML file.

    Returns:
        One dict per non-empty document, in file order.

    Raises:
        ManifestError: a document is not a mapping.
    """
    objs: list[dict[str, Any]] = []
    for index, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
        if doc is None:
            continue  # `---` at the start or the end, or a comment-only document
        if not isinstance(doc, dict):
            raise ManifestError(f"{path}: document {index + 1} is not a Kubernetes object")
        objs.append(doc)
    return objs


@functools.cache
def _cluster_template() -> tuple[dict[str, Any], ...]:
    # Read once per process; render_cluster deep-copies, so nobody can change the cached objects.
    return tuple(load_objects(data_path("k8s") / CLUSTER_MANIFEST))


def render_cluster(params: ClusterParams) -> list[dict[str, Any]]:
    """v2's data tier (k8s/pgvector-redis.yaml) patched for one cluster.

    Args:
        params: namespace, PostgreSQL major, storage, NodePorts and Secret names.

    Returns:
        New objects (deep copies, in file order): the namespace on every namespaced object and
        the Namespace itself, the pgvector image for ``postgres_major``, storage class and sizes
        in the volumeClaimTemplates, the NodePorts, and every Secret reference renamed.
    """
    image = postgres_image(params.postgres_major)
    secrets = {POSTGRES_SECRET: params.postgres_secret, REDIS_SECRET: params.redis_secret}
    objs = copy.deepcopy(list(_cluster_template()))
    for obj in objs:
        _patch_namespace(obj, params.namespace)
        _rename_secret_refs(obj, secrets)
        if obj["kind"] == "StatefulSet":
            _patch_statefulset(obj, params, image)
        elif obj["kind"] == "Service":
            _patch_node_ports(obj, params)
    return objs


def render_migrate_job(namespace: str, postgres_secret: str) -> dict[str, Any]:
    """k8s/job-db-migrate.yaml for one namespace, reading the PostgreSQL Secret's current name.

    Args:
        namespace: where the Job runs (the Secret's namespace).
        postgres_secret: the hash-suffixed name of the PostgreSQL Secret k8s_secrets applied.

    Returns:
        A new Job object.
    """
    (job,) = load_objects(data_path("k8s") / MIGRATE_JOB_MANIFEST)
    _patch_namespace(job, namespace)
    _rename_secret_refs(job, {POSTGRES_SECRET: postgres_secret})
    return job


def _patch_namespace(obj: dict[str, Any], namespace: str) -> None:
    if obj["kind"] == "Namespace":
        obj["metadata"]["name"] = namespace
        labels = obj["metadata"].get("labels") or {}
        if "app.kubernetes.io/name" in labels:
            labels["app.kubernetes.io/name"] = namespace
    elif obj["kind"] not in CLUSTER_SCOPED_KINDS:
        obj["metadata"]["namespace"] = namespace


def _patch_statefulset(obj: dict[str, Any], params: ClusterParams, image: str) -> None:
    is_postgres = obj["metadata"]["name"] == "postgres"
    if is_postgres:
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith(f"{PGVECTOR_REPOSITORY}:"):
                container["image"] = image
    else:
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith(f"{REDIS_REPOSITORY}:"):
                container["image"] = params.redis_image
    size = params.postgres_storage if is_postgres else params.redis_storage
    for claim in obj["spec"].get("volumeClaimTemplates", []):
        spec = claim["spec"]
        spec["resources"]["requests"]["storage"] = size
        if params.storage_class:
            spec["storageClassName"] = params.storage_class
        else:
            # Absent (not ""): "" would mean "no class" and disable dynamic provisioning.
            spec.pop("storageClassName", None)


def _patch_node_ports(obj: dict[str, Any], params: ClusterParams) -> None:
    ports = {"postgres": params.postgres_node_port, "redis": params.redis_node_port}
    node_port = ports.get(obj["metadata"]["name"])
    if node_port is None or obj["spec"].get("type") != "NodePort":
        return
    for port in obj["spec"]["ports"]:
        port["nodePort"] = node_port


def _rename_secret_refs(obj: dict[str, Any], names: dict[str, str]) -> None:
    # secretKeyRef (env) and secretRef (envFrom), wherever they are in the object.
    for ref in _find_dicts(obj, lambda key: key in ("secretKeyRef", "secretRef")):
        if ref.get("name") in names:
            ref["name"] = names[ref["name"]]


def _find_dicts(node: object, wanted: Callable[[str], bool]) -> Iterator[dict[str, Any]]:
    """Every dict value, at any depth, whose key satisfies ``wanted``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if wanted(key) and isinstance(value, dict):
                yield value
            yield from _find_dicts(value, wanted)
    elif isinstance(node, list):
        for item in node:
            yield from _find_dicts(item, wanted)


def _kind_rank(obj: dict[str, Any]) -> int:
    kind = obj.get("kind", "")
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def sort_for_apply(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order objects so each one's dependencies are applied before it.

    Args:
        objs: Kubernetes objects.

    Returns:
        A new list in KIND_ORDER (unknown kinds last, file order kept within a kind); delete
        in the reversed order.
    """
    return sorted(objs, key=_kind_rank)


def _describe(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{metadata.get('name', '?')}"


def _validator() -> Any:
    # kubernetes-validate is in the `dev` extra: import it only when validation is asked for.
    try:
        import kubernetes_validate
    except ImportError as err:
        raise ManifestError(
            "Validating Kubernetes objects needs kubernetes-validate: "
            "pip install 'kubernetes-validate>=1.30' (or the project's dev extra)."
        ) from err
    return kubernetes_validate


@functools.cache
def _schema_versions() -> tuple[str, ...]:
    from kubernetes_validate.utils import all_versions

    return tuple(all_versions())


@functools.cache
def _schema_validator(version: str, kind: str, api_version: str) -> Any:
    """The strict JSON-schema validator of one kind at one Kubernetes version, built once.

    kubernetes-validate's own ``validate`` reads and parses the schema and all its definitions
    (megabytes of JSON) on every call; this picks the same files (the newest schema not newer than
    ``version``) and keeps the validator for the next object of that kind.

    Returns:
        A jsonschema validator, or a message saying why there is none (unknown version or kind).
    """
    _validator()
    import jsonschema
    from kubernetes_validate.utils import VersionNotSupportedError, major_minor, schema_contents
    from referencing import Registry, Resource

    wanted = major_minor(version.removeprefix("v"))
    older = [v for v in _schema_versions() if major_minor(v) <= wanted]
    if not older or wanted > major_minor(_schema_versions()[-1]):
        return f"kubernetes-validate does not support version {wanted}"
    folder = f"kubernetes-json-schema/v{older[-1]}-local-strict"
    # rbac.authorization.k8s.io/v1 -> rbac-v1, as the schema files are named
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", wanted)
        definitions = schema_contents(f"{folder}/_definitions.json", wanted)
    except FileNotFoundError:
        return (
            f"Couldn't find schema for kind {kind} with api version {api_version} "
            f"for kubernetes version {wanted}"
        )
    except VersionNotSupportedError as err:
        return str(err.message)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _validation_problem(obj: dict[str, Any], version: str) -> str | None:
    try:
        validator = _schema_validator(version, obj["kind"], obj["apiVersion"])
    except KeyError as err:  # no apiVersion or kind
        return f"missing {err}"
    if isinstance(validator, str):
        return validator
    err = next(iter(validator.iter_errors(obj)), None)  # the error validate() would raise
    if err is None:
        return None
    where = ".".join(str(part) for part in err.absolute_path) or "(top level)"
    if obj.get("kind") == "Secret":
        # jsonschema messages quote the offending value: never show a Secret's.
        return f"{where}: fails the schema's {err.validator!r} rule"
    return f"{where}: {err.message[:300]}"


def validate_objects(objs: list[dict[str, Any]], version: str = "1.30.0") -> None:
    """Check every object against the Kubernetes API schema, strictly (no unknown fields).

    Args:
        objs: Kubernetes objects.
        version: the Kubernetes version whose schema applies.

    Raises:
        ManifestError: listing every invalid object as kind/name with its schema error.
    """
    problems = []
    for obj in objs:
        problem = _validation_problem(obj, version)
        if problem:
            problems.append(f"{_describe(obj)}: {problem}")
    if problems:
        raise ManifestError(
            f"Kubernetes objects invalid for Kubernetes {version}:\n  - " + "\n  - ".join(problems)
        )


def to_yaml(objs: list[dict[str, Any]]) -> str:
    """Serialise objects as one multi-document YAML stream (what ``kubectl apply -f -`` reads).

    Args:
        objs: Kubernetes objects.

    Returns:
        The YAML text, documents separated by ``---``, keys in their original order.
    """
    return yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False)
