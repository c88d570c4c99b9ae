"""The pooler's and the replica's Kubernetes objects: k8s/pgbouncer.yaml and the kustomize overlay
k8s/overlays/replica, rendered for one namespace, the current Secret names and v2's major.

The overlay is read the way ``kubectl apply -k`` reads it, for the parts it uses: ``resources``
(files and folders with their own kustomization.yaml), ``namespace``, and JSON 6902 ``add``
patches. Anything else is refused by name rather than silently ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from cartrita_assets.cluster.k8s.manifests import (
    POSTGRES_SECRET,
    REDIS_SECRET,
    ManifestError,
    _patch_namespace,
    _rename_secret_refs,
    load_objects,
    postgres_image,
)
from cartrita_assets.paths import data_path

POOLER_MANIFEST = "pgbouncer.yaml"
REPLICA_OVERLAY = "overlays/replica"
KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "resources", "patches"}

Obj = dict[str, Any]


def build_kustomization(folder: Path) -> list[Obj]:
    """The objects ``kubectl kustomize folder`` prints, for the features this project uses."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(spec) - KUSTOMIZE_KEYS
    if unknown:
        raise ManifestError(f"{folder}/kustomization.yaml uses {sorted(unknown)}: not supported.")
    objs: list[Obj] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        objs += build_kustomization(path) if path.is_dir() else load_objects(path)
    for patch in spec.get("patches", []):
        ops = yaml.safe_load((folder / patch["path"]).read_text(encoding="utf-8"))
        targets = [o for o in objs if _matches(o, patch["target"])]
        if not targets:
            raise ManifestError(f"{folder}: patch {patch['path']} matches no object.")
        for obj in targets:
            for op in ops:
                _add(obj, op, patch["path"])
    if "namespace" in spec:
        for obj in (o for o in objs if o["kind"] != "Namespace"):
            _patch_namespace(obj, spec["namespace"])
    return objs


def _matches(obj: Obj, target: dict[str, str]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return (
        obj["kind"] == target.get("kind", obj["kind"])
        and obj["metadata"]["name"] == target.get("name", obj["metadata"]["name"])
        and group == target.get("group", group)
    )


def _add(obj: Obj, op: dict[str, Any], source: str) -> None:
    if op.get("op") != "add":
        raise ManifestError(f"{source}: only JSON patch 'add' operations are supported.")
    *parents, last = op["path"].lstrip("/").split("/")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(op["value"])
    if isinstance(node, list):
        node.append(value) if last == "-" else node.insert(int(last), value)
    else:
        node[last] = value


def render_pooler(namespace: str, postgres_secret: str) -> list[Obj]:
    """k8s/pgbouncer.yaml for ``namespace``, reading the PostgreSQL Secret ``postgres_secret``."""
    objs = load_objects(data_path("k8s") / POOLER_MANIFEST)
    for obj in objs:
        _patch_namespace(obj, namespace)
        _rename_secret_refs(obj, {POSTGRES_SECRET: postgres_secret})
    return objs


def render_replica_overlay(
    namespace: str, secret_names: dict[str, str], postgres_major: int
) -> list[Obj]:
    """v2's data tier with the read replica (k8s/overlays/replica) for ``namespace``, the
    hash-suffixed Secret names (``postgres``, ``redis``) and v2's PostgreSQL major."""
    objs = build_kustomization(data_path("k8s") / REPLICA_OVERLAY)
    renames = {POSTGRES_SECRET: secret_names["postgres"], REDIS_SECRET: secret_names["redis"]}
    image = postgres_image(postgres_major)
    for obj in objs:
        _patch_namespace(obj, namespace)
        _rename_secret_refs(obj, renames)
        if obj["kind"] == "StatefulSet" and "postgres" in obj["metadata"]["name"]:
            spec = obj["spec"]["template"]["spec"]
            for container in spec["containers"] + spec.get("initContainers", []):
                container["image"] = image
    return objs
