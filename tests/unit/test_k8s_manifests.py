"""v2's Kubernetes objects: valid, patched as asked, and free of credentials."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cartrita_assets.cluster.k8s.manifests import (
    KIND_ORDER,
    ClusterParams,
    ManifestError,
    load_objects,
    postgres_image,
    render_cluster,
    render_migrate_job,
    sort_for_apply,
    to_yaml,
    validate_objects,
)
from cartrita_assets.paths import data_path

K8S = data_path("k8s")
CUSTOM = ClusterParams(
    namespace="cartrita-v2",
    postgres_major=16,
    storage_class="fast-ssd",
    postgres_storage="50Gi",
    redis_storage="4Gi",
    postgres_node_port=30432,
    redis_node_port=30379,
    postgres_secret="cartrita-postgres-7f9c2b",
    redis_secret="cartrita-redis-1a2b3c",
)

# Things that look like a credential: a URL with user:password@, a literal password assignment,
# a key or token blob.
CREDENTIAL_PATTERNS = [
    re.compile(r"://[^:/\s@]+:[^@\s]+@"),
    re.compile(r"(?i)\b(password|passwd|secret|token)\s*[=:]\s*[^\s\"'$%{]"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bSCRAM-SHA-256\$"),
]
SECRET_ENV_NAME = re.compile(r"(?i)(PASSWORD|SECRET|TOKEN|_KEY|DATABASE_URL|REDIS_URL)")


def by_name(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def dicts_under(node: object, key: str) -> Iterator[dict]:
    if isinstance(node, dict):
        for k, value in node.items():
            if k == key and isinstance(value, dict):
                yield value
            yield from dicts_under(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from dicts_under(item, key)


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
@pytest.mark.parametrize("params", [ClusterParams(), CUSTOM], ids=["defaults", "custom"])
def test_every_rendered_object_is_strictly_valid(params, version):
    validate_objects(render_cluster(params), version)


def test_the_file_itself_is_valid_and_is_what_the_defaults_render():
    objs = load_objects(K8S / "pgvector-redis.yaml")
    validate_objects(objs, "1.30.0")
    assert render_cluster(ClusterParams()) == objs


def test_validation_names_the_object_and_hides_secret_values():
    bad = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"bogus": 1}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": 12345}},
    ]
    with pytest.raises(ManifestError) as caught:
        validate_objects(bad)
    message = str(caught.value)
    assert "Service/x" in message and "bogus" in message
    assert "Secret/s" in message and "12345" not in message


def test_load_objects_skips_empty_documents(tmp_path):
    path = tmp_path / "objs.yaml"
    path.write_text("---\n# only a comment\n---\nkind: A\n---\n---\nkind: B\n...\n")
    assert [o["kind"] for o in load_objects(path)] == ["A", "B"]


def test_load_objects_refuses_a_non_object(tmp_path):
    path = tmp_path / "objs.yaml"
    path.write_text("kind: A\n---\n- not an object\n")
    with pytest.raises(ManifestError, match="document 2"):
        load_objects(path)


def test_namespace_lands_on_every_namespaced_object():
    objs = render_cluster(CUSTOM)
    assert by_name(objs, "Namespace", "cartrita-v2")
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "cartrita-v2", obj["metadata"]["name"]


def test_the_namespace_label_follows_the_namespace():
    (namespace,) = [o for o in render_cluster(CUSTOM) if o["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["app.kubernetes.io/name"] == "cartrita-v2"


def test_the_migration_job_reads_the_current_secret_in_its_namespace():
    job = render_migrate_job("cartrita-v2", "cartrita-postgres-7f9c2b")
    assert job["metadata"]["namespace"] == "cartrita-v2"
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
    assert refs == {"cartrita-postgres-7f9c2b"}
    validate_objects([job])
    assert render_migrate_job("data-stack", "x")["metadata"]["namespace"] == "data-stack"


@pytest.mark.parametrize("major", [15, 16, 17, 18])
def test_postgres_image_tracks_the_major(major):
    objs = render_cluster(ClusterParams(postgres_major=major))
    (container,) = containers(by_name(objs, "StatefulSet", "postgres"))
    assert container["image"] == f"pgvector/pgvector:pg{major}" == postgres_image(major)
    # Redis is left alone.
    assert containers(by_name(objs, "StatefulSet", "redis"))[0]["image"] == "redis:7.4-alpine"


@pytest.mark.parametrize("major", [12, 9, 0, -1])
def test_postgres_image_refuses_majors_without_an_image(major):
    with pytest.raises(ManifestError, match="13 or newer") as caught:
        postgres_image(major)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ManifestError):
        render_cluster(ClusterParams(postgres_major=major))


def test_storage_class_and_sizes_land_in_the_claims():
    objs = render_cluster(CUSTOM)
    for name, size in (("postgres", "50Gi"), ("redis", "4Gi")):
        (claim,) = by_name(objs, "StatefulSet", name)["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["storageClassName"] == "fast-ssd"
        assert claim["spec"]["resources"]["requests"]["storage"] == size


def test_no_storage_class_means_the_cluster_default():
    for obj in render_cluster(ClusterParams(storage_class=None)):
        for claim in obj.get("spec", {}).get("volumeClaimTemplates", []):
            # Absent, not "" (which would turn dynamic provisioning off).
            assert "storageClassName" not in claim["spec"]


def test_default_storage_sizes():
    objs = render_cluster(ClusterParams())
    sizes = {
        name: by_name(objs, "StatefulSet", name)["spec"]["volumeClaimTemplates"][0]["spec"][
            "resources"
        ]["requests"]["storage"]
        for name in ("postgres", "redis")
    }
    assert sizes == {"postgres": "10Gi", "redis": "2Gi"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [(ClusterParams(), (32432, 32379)), (CUSTOM, (30432, 30379))],
    ids=["defaults", "custom"],
)
def test_node_ports(params, expected):
    objs = render_cluster(params)
    for name, port, node_port in zip(("postgres", "redis"), (5432, 6379), expected, strict=True):
        service = by_name(objs, "Service", name)
        assert service["spec"]["type"] == "NodePort"
        assert [(p["port"], p["nodePort"]) for p in service["spec"]["ports"]] == [(port, node_port)]
        headless = by_name(objs, "Service", f"{name}-headless")
        assert headless["spec"]["clusterIP"] == "None"
        assert all("nodePort" not in p for p in headless["spec"]["ports"])


def test_every_secret_ref_is_renamed():
    objs = render_cluster(CUSTOM)
    refs = [ref["name"] for obj in objs for ref in dicts_under(obj, "secretKeyRef")]
    assert refs.count("cartrita-postgres-7f9c2b") == 3  # POSTGRES_USER, _PASSWORD, _DB
    assert refs.count("cartrita-redis-1a2b3c") == 1
    assert set(refs) == {"cartrita-postgres-7f9c2b", "cartrita-redis-1a2b3c"}


def test_rendering_never_changes_the_loaded_template():
    render_cluster(CUSTOM)[0]["metadata"]["name"] = "mutated by the caller"
    assert render_cluster(ClusterParams()) == load_objects(K8S / "pgvector-redis.yaml")


def test_sort_for_apply_puts_dependencies_first():
    objs = [
        {"kind": "Job", "metadata": {"name": "j"}},
        {"kind": "Widget", "metadata": {"name": "w"}},
        {"kind": "StatefulSet", "metadata": {"name": "s1"}},
        {"kind": "Service", "metadata": {"name": "svc"}},
        {"kind": "StatefulSet", "metadata": {"name": "s2"}},
        {"kind": "Secret", "metadata": {"name": "sec"}},
        {"kind": "ConfigMap", "metadata": {"name": "cm"}},
        {"kind": "Namespace", "metadata": {"name": "ns"}},
    ]
    ordered = sort_for_apply(objs)
    assert [o["metadata"]["name"] for o in ordered] == [
        "ns", "sec", "cm", "svc", "s1", "s2", "j", "w",
    ]  # fmt: skip
    assert objs[0]["kind"] == "Job"  # a new list; the input is untouched
    assert KIND_ORDER == ["Namespace", "Secret", "ConfigMap", "Service", "StatefulSet", "Job"]


def test_rendered_cluster_sorts_namespace_first_and_statefulsets_last():
    kinds = [o["kind"] for o in sort_for_apply(render_cluster(ClusterParams()))]
    assert kinds[0] == "Namespace" and kinds[-2:] == ["StatefulSet", "StatefulSet"]


def test_to_yaml_round_trips():
    objs = render_cluster(CUSTOM)
    assert [d for d in yaml.safe_load_all(to_yaml(objs)) if d] == objs


def all_k8s_objects() -> list[dict]:
    return (
        render_cluster(ClusterParams())
        + render_cluster(CUSTOM)
        + load_objects(K8S / "job-db-migrate.yaml")
    )


def test_no_object_but_a_secret_holds_a_credential():
    for obj in all_k8s_objects():
        if obj["kind"] == "Secret":
            continue
        for text in strings(obj):
            for pattern in CREDENTIAL_PATTERNS:
                assert not pattern.search(text), (obj["metadata"]["name"], pattern.pattern)
        for container in containers(obj):
            for env in container.get("env", []):
                if SECRET_ENV_NAME.search(env["name"]):
                    assert "value" not in env, (obj["metadata"]["name"], env["name"])
                    assert "secretKeyRef" in env["valueFrom"], env["name"]


def test_no_password_reaches_a_command_line():
    requirepass_value = re.compile(r"requirepass\s+(?!\"?%s\"?(\s|\\n|$))\S")
    kubernetes_expansion = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*PASS[A-Za-z0-9_]*\)")
    for obj in all_k8s_objects():
        for container in containers(obj):
            argv = " ".join(container.get("command", []) + container.get("args", []))
            assert not requirepass_value.search(argv), obj["metadata"]["name"]
            assert not kubernetes_expansion.search(argv), obj["metadata"]["name"]
            assert "--requirepass" not in argv and "-a " not in argv


def redis_container(objs: list[dict]) -> dict:
    (container,) = containers(by_name(objs, "StatefulSet", "redis"))
    return container


def test_redis_password_comes_from_the_secret_through_a_private_config_file():
    objs = render_cluster(ClusterParams())
    container = redis_container(objs)
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"
    script = " ".join(container["args"])
    assert "umask 077" in script and "exec redis-server /tmp/redis.conf" in script
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/tmp"}
    volumes = by_name(objs, "StatefulSet", "redis")["spec"]["template"]["spec"]["volumes"]
    assert any("emptyDir" in v for v in volumes)


@pytest.mark.parametrize("password", ["plain", "a\"b\\c d$e'f`g\\n%s;x"])
def test_redis_config_script_quotes_any_password(tmp_path, password):
    container = redis_container(render_cluster(ClusterParams()))
    conf = tmp_path / "redis.conf"
    script = " ".join(container["args"]).replace("/tmp/redis.conf", str(conf))
    script = script.replace("exec redis-server", "exec true")
    run = subprocess.run(
        [*container["command"], script],
        env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": password},
        check=False,
    )
    assert run.returncode == 0
    escaped = password.replace("\\", "\\\\").replace('"', '\\"')
    assert conf.read_text().splitlines() == [
        "appendonly yes",
        "dir /data",
        f'requirepass "{escaped}"',
    ]
    assert conf.stat().st_mode & 0o077 == 0


def test_redis_probes_are_authenticated():
    container = redis_container(render_cluster(ClusterParams()))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = " ".join(container[probe]["exec"]["command"])
        assert 'REDISCLI_AUTH="$REDIS_PASSWORD"' in command, probe
        assert "PONG" in command and "-a " not in command, probe


def test_postgres_probes_and_data_directory():
    objs = render_cluster(ClusterParams())
    (container,) = containers(by_name(objs, "StatefulSet", "postgres"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == [
            "sh",
            "-c",
            'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1',
        ]
    env = {e["name"]: e for e in container["env"]}
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name
    data_mount = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert env["PGDATA"]["value"].startswith(data_mount["mountPath"] + "/")


@pytest.mark.parametrize("name", ["postgres", "redis"])
def test_statefulsets_run_as_non_root(name):
    sts = by_name(render_cluster(ClusterParams()), "StatefulSet", name)
    pod = sts["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == pod["fsGroup"] == 999
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(sts):
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= container["resources"].keys()


def test_every_object_carries_the_labels():
    for obj in render_cluster(ClusterParams()):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "cartrita"
        assert labels["app.kubernetes.io/name"]
        if obj["kind"] == "StatefulSet":
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_kustomization_lists_the_cluster_but_not_the_job():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "data-stack"
    assert kustomization["resources"] == ["pgvector-redis.yaml"]
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file()


def test_helm_values_use_the_k8s_run_launcher_and_a_password_secret():
    values = yaml.safe_load((K8S / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["repository"] == "cartrita-assets"
    assert {"name": "CARTRITA_ENV", "value": "kubernetes"} in deployment["env"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert "postgresqlPassword" not in values["postgresql"]
    for text in strings(values):
        assert not any(p.search(text) for p in CREDENTIAL_PATTERNS), text


def test_data_path_finds_the_k8s_folder():
    assert isinstance(K8S, Path) and (K8S / "pgvector-redis.yaml").is_file()
