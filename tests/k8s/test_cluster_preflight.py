"""What the kubernetes environment checks on the real API server before it changes anything,
and the CLI's view of a namespace (``cartrita v2 status`` / ``cartrita v2 logs``)."""

from __future__ import annotations

import pytest
from support.kube_env import kube_env
from support.runs import failure_messages, materialize

from cartrita_assets.cli import main as cli
from cartrita_assets.pg.connect import connect

# The control plane is started once per worker: every k8s test runs on the same one
# (support/groups.py says why the mark is written here).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("k8s-control-plane")]

LABEL = "app.kubernetes.io/managed-by=cartrita-assets"


def test_an_object_the_server_rejects_stops_the_run_before_anything_is_created(
    demo_v1, test_dir, kubeconfig, cluster, instance, monkeypatch
):
    # a valid string for the schema, not a valid name for the server (DNS subdomain)
    monkeypatch.setenv("CARTRITA_STORAGE_CLASS", "Fast_SSD")
    with kube_env(test_dir, demo_v1.env_file, kubeconfig, monkeypatch,
                  namespace="cartrita-rejected") as env:  # fmt: skip
        result = materialize(env.resources, instance, "k8s_secrets")
        assert not result.success
        (message,) = failure_messages(result)
        assert "StatefulSet cartrita-rejected/postgres" in message
        assert "storageClassName" in message and "dry run" in message
        assert cluster.get("v1", "Namespace", "cartrita-rejected", None) is None
        for namespace in ("default", "cartrita-rejected"):
            for api, kind in (("v1", "Secret"), ("v1", "Service"), ("apps/v1", "StatefulSet")):
                assert cluster.list(api, kind, namespace, LABEL) == []
                assert not [o for o in cluster.list(api, kind, namespace)
                            if o["metadata"]["name"].startswith(("cartrita-", "postgres",
                                                                "redis"))]  # fmt: skip
        assert not (env.env_file.parent / ".env.v2").exists()


def test_cli_status_and_logs_against_the_real_server(
    demo_v1, test_dir, kubeconfig, cluster, instance, monkeypatch, capsys
):
    with kube_env(test_dir, demo_v1.env_file, kubeconfig, monkeypatch,
                  namespace="cartrita-cli") as env:  # fmt: skip
        made = materialize(env.resources, instance, "k8s_secrets", "pgvector_cluster")
        assert made.success, failure_messages(made)
        capsys.readouterr()

        assert cli.main(["v2", "status"]) == 0
        status = capsys.readouterr().out
        assert "postgres-0" in status and "redis-0" in status
        assert "Running ready 1/1" in status
        pg_port = env.resources["v2"].pg_node_port
        assert f"NodePort 5432->{pg_port}" in status

        assert cli.main(["v2", "logs", "postgres"]) == 2
        out = capsys.readouterr()
        assert out.out == ""
        (line,) = out.err.strip().splitlines()
        assert line.startswith("error: Cannot read the logs of pod cartrita-cli/postgres-0")
        assert "kubelet" in line and "Traceback" not in line

        env.resources["v2"].stop(lambda _m: None)
        assert cli.main(["v2", "logs", "redis"]) == 2
        err = capsys.readouterr().err
        assert "Pod cartrita-cli/redis-0 does not exist" in err


def test_a_v2_database_holding_data_is_still_refused(
    demo_v1, test_dir, kubeconfig, instance, monkeypatch
):
    with kube_env(test_dir, demo_v1.env_file, kubeconfig, monkeypatch,
                  namespace="cartrita-user-data") as env:  # fmt: skip
        dbname = env.resources["v1"].settings().postgres.dbname
        with connect(env.resources["v2"].admin(dbname), role="test") as conn:
            conn.execute("CREATE TABLE notes (body text)")
            conn.execute("INSERT INTO notes VALUES ('written to v2 by someone')")
        keys = ("v1_backup", "k8s_secrets", "pgvector_cluster", "restored_db")
        result = materialize(env.resources, instance, *keys)
        assert not result.success
        (message,) = failure_messages(result)
        assert f"v2 already has a database '{dbname}' that this project did not restore" in message
        with connect(env.resources["v2"].admin(dbname), role="test") as conn:
            assert conn.execute("SELECT body FROM notes").fetchall() == [
                ("written to v2 by someone",)
            ]
