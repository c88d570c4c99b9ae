"""The pooler's and the replica's files without servers: valid objects, no credentials, the
overlay read as kustomize reads it, the auth file's quoting."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cartrita_assets.cluster.k8s.manifests import ManifestError, load_objects
from cartrita_assets.errors import ServingError
from cartrita_assets.serving.k8s import build_kustomization, render_pooler, render_replica_overlay
from cartrita_assets.serving.pooler import LocalPooler, auth_line

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"postgres": "cartrita-postgres-abc", "redis": "cartrita-redis-abc"}


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_pooler_and_replica_objects_are_valid(version: str) -> None:
    objs = [
        *load_objects(ROOT / "k8s" / "pgbouncer.yaml"),
        *build_kustomization(ROOT / "k8s" / "overlays" / "replica"),
    ]
    for obj in objs:
        kubernetes_validate.validate(obj, version, strict=True)


def test_overlay_adds_the_replica_and_lets_the_primary_accept_replication() -> None:
    objs = render_replica_overlay("elsewhere", NAMES, 17)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert {("StatefulSet", "postgres"), ("StatefulSet", "postgres-replica"),
            ("Service", "postgres-read"), ("ConfigMap", "postgres-hba")} <= kinds  # fmt: skip
    assert all(
        o["metadata"].get("namespace") == "elsewhere" for o in objs if o["kind"] != "Namespace"
    )
    replica = next(o for o in objs if o["metadata"]["name"] == "postgres-replica")
    spec = replica["spec"]["template"]["spec"]
    assert {c["image"] for c in spec["containers"] + spec["initContainers"]} == {
        "pgvector/pgvector:pg17"
    }
    read = next(o for o in objs if o["metadata"]["name"] == "postgres-read")
    assert read["spec"]["selector"]["app.kubernetes.io/name"] == "postgres-replica"
    text = yaml.safe_dump_all(objs)
    assert "cartrita-postgres-abc" in text and "name: cartrita-postgres\n" not in text


def test_pooler_manifest_reads_credentials_from_the_secret_only() -> None:
    objs = render_pooler("ns", NAMES["postgres"])
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    for container in spec["containers"] + spec["initContainers"]:
        for env in container.get("env", []):
            assert env["valueFrom"]["secretKeyRef"]["name"] == NAMES["postgres"]
        assert "PASSWORD" not in " ".join(container.get("command", []))
    config = next(o for o in objs if o["kind"] == "ConfigMap")["data"]["pgbouncer.ini"]
    assert "pool_mode = transaction" in config and "auth_type = scram-sha-256" in config
    auth = next(v for v in spec["volumes"] if v["name"] == "auth")
    assert auth["emptyDir"]["medium"] == "Memory"


def test_unsupported_kustomize_features_are_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nimages: []\n")
    with pytest.raises(ManifestError, match="images"):
        build_kustomization(tmp_path)


def test_auth_line_quotes_the_role_and_refuses_anything_but_a_scram_verifier() -> None:
    verifier = "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy"
    assert auth_line('we"ird', verifier) == f'"we""ird" "{verifier}"\n'
    with pytest.raises(ServingError, match="no SCRAM verifier"):
        auth_line("app", "md5abcdef")
    with pytest.raises(ServingError, match="cannot be written"):
        auth_line("a\nb", verifier)


def test_pooler_config_pools_transactions_on_loopback(tmp_path: Path) -> None:
    text = LocalPooler(tmp_path, 6432, 5432).config_text()
    assert "* = host=127.0.0.1 port=5432" in text
    assert "listen_addr = 127.0.0.1" in text and "pool_mode = transaction" in text
    assert "password" not in text.lower()


def test_forward_takes_via_pooler() -> None:
    from cartrita_assets.cli.main import build_parser

    assert build_parser().parse_args(["forward", "--via-pooler"]).via_pooler is True
    assert build_parser().parse_args(["forward"]).via_pooler is False


def test_outside_the_embedded_default_the_assets_name_the_manifests_to_apply() -> None:
    from cartrita_assets.cluster.v2 import V2Target
    from cartrita_assets.resources.serving import ServingResource

    with pytest.raises(ServingError, match="k8s/pgbouncer.yaml"):
        ServingResource().pooler(V2Target())
    with pytest.raises(ServingError, match="k8s/overlays/replica"):
        ServingResource().replica(V2Target())


@pytest.mark.parametrize("forward_code", [0, 1])
def test_via_pooler_runs_the_pooler_job_after_a_green_forward_run_only(
    monkeypatch: pytest.MonkeyPatch, forward_code: int
) -> None:
    # The job runner is replaced (the real runs are in tests/integration/test_v2_serving.py):
    # this is about which jobs the command asks for, with which run config.
    from cartrita_assets.cli import main

    calls: list[tuple[str, dict[str, object]]] = []

    def run_job(name: str, config: dict[str, object], *_args: object) -> int:
        calls.append((name, config))
        return forward_code if name == "forward_migration_job" else 0

    monkeypatch.setattr(main, "_run_job", run_job)
    monkeypatch.setattr(main, "_check_v1_env_file", lambda: None)
    code = main._forward(main.build_parser().parse_args(["forward", "--via-pooler"]))
    assert code == forward_code
    expected = [("v2_pooler_job", {"ops": {"v2_pooler": {"config": {"via_pooler": True}}}})]
    assert calls[1:] == (expected if forward_code == 0 else [])
