"""Follow mode's kubernetes preflight on the real API server: a probe pod in v2's namespace checks
that v1's PostgreSQL and Redis can be reached before anything changes on v1.

The control plane has no kubelet. `StandInKubelet` runs the probe pod's command on this machine,
as if the pod had host networking (see support/kubelet.py), so these tests prove the pod the
project creates, its command, the wait, the reading of its end, the message and the deletion, on
a real API server; they cannot prove that a real cluster's pod network, CNI or NetworkPolicies
let a pod through. v1's servers listen on 127.0.0.1 only; a `Relay` makes them answer at this
machine's outward address, which is what ``CARTRITA_V1_HOST_FOR_V2`` names.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.kube_env import set_environment, v1_env_text
from support.kubelet import StandInKubelet
from support.ports import free_port
from support.relay import Relay, outward_address
from support.runs import failure_messages, materialize

from cartrita_assets.cluster.k8s.cluster import KubernetesCluster
from cartrita_assets.cluster.k8s.probe import PROBE_SELECTOR
from cartrita_assets.defs.follow.begin import reach_probe
from cartrita_assets.environments import build_resources
from cartrita_assets.follow import steps
from cartrita_assets.pg.connect import connect

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("k8s-control-plane")]

FOLLOW = {"ops": {"v1_backup": {"config": {"follow": True, "replica_identity_full": True}}}}


@contextlib.contextmanager
def follow_env(
    test_dir: Path, demo_env: Path, kubeconfig: str, monkeypatch: pytest.MonkeyPatch,
    namespace: str, timeout: int,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The kubernetes environment's resources, v2 reaching v1 at this machine's outward address;
    the namespace is deleted afterwards."""
    env_file = test_dir / "app" / ".env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(v1_env_text(demo_env, app_keys=True))
    env_file.chmod(0o600)
    set_environment(monkeypatch, test_dir, kubeconfig, namespace)
    monkeypatch.setenv("CARTRITA_V1_HOST_FOR_V2", outward_address())
    monkeypatch.setenv("CARTRITA_REACH_PROBE_TIMEOUT", str(timeout))
    monkeypatch.setenv("CARTRITA_V2_PG_PORT", str(free_port()))
    monkeypatch.setenv("CARTRITA_V2_REDIS_PORT", str(free_port()))
    resources = build_resources(state=test_dir / "state")
    try:
        yield resources
    finally:
        # the demo v1 is the session's: should a preflight wrongly pass, remove what it made
        steps.abort(resources["v1"].settings(), resources["follow"].path(), lambda _m: None)
        KubernetesCluster.from_environment(kubeconfig).delete("v1", "Namespace", namespace, None)


def relay(resources: dict[str, Any], service: str) -> Relay:
    """v1's ``postgres`` or ``redis`` answering at the outward address, on its own port."""
    v1 = resources["v1"].settings()
    server = v1.postgres if service == "postgres" else v1.redis
    host = resources["follow"].v1_host_for_v2
    return Relay(host, server.port, ("127.0.0.1", server.port))


def probe_pods(cluster: KubernetesCluster, namespace: str) -> list[dict]:
    return cluster.list("v1", "Pod", namespace, PROBE_SELECTOR)


def follow_objects_on_v1(resources: dict[str, Any]) -> tuple[list, list]:
    with connect(resources["v1"].settings().postgres, role="test") as conn:
        slots = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name = 'cartrita_follow'"
        ).fetchall()
        pubs = conn.execute(
            "SELECT pubname FROM pg_publication WHERE pubname = 'cartrita_follow'"
        ).fetchall()
    return slots, pubs


def assert_no_password(kubelet: StandInKubelet, resources: dict[str, Any]) -> None:
    (pod,) = kubelet.probes_run
    text = json.dumps(pod)
    secrets = resources["v1"].settings().secret_values()
    assert secrets and not [s for s in secrets if s in text]
    assert "env" not in pod["spec"]["containers"][0]


def test_a_reachable_v1_passes_and_the_probe_pod_is_deleted(
    demo_v1, test_dir, kubeconfig, cluster, monkeypatch
):
    ns = "cartrita-reach-ok"
    with (
        follow_env(test_dir, demo_v1.env_file, kubeconfig, monkeypatch, ns, 30) as resources,
        relay(resources, "postgres"), relay(resources, "redis"),
        StandInKubelet(kubeconfig, [ns]) as kubelet,
    ):  # fmt: skip
        follow, lines = resources["follow"], []
        settings = resources["v1"].settings()
        started = time.monotonic()
        facts = steps.check_preflight(
            settings, full_identity_consent=True, topology=follow.topology,
            v1_host_for_v2=follow.v1_host_for_v2,
            probe=reach_probe(resources["v2"], follow, lines.append),
        )  # fmt: skip
        took = time.monotonic() - started
        assert facts.host == follow.v1_host_for_v2 != settings.postgres.host
        (pod,) = kubelet.probes_run
        assert pod["spec"]["containers"][0]["image"] == f"pgvector/pgvector:pg{facts.major}"
        assert pod["spec"]["restartPolicy"] == "Never"
        assert pod["spec"]["activeDeadlineSeconds"] == 30
        assert any("exit code 0" in line for line in lines), lines
        assert probe_pods(cluster, ns) == []
        assert_no_password(kubelet, resources)
        print(f"reachable: preflight with the probe pod took {took:.1f}s")


def test_an_unreachable_port_fails_before_v1_changes_naming_it(
    demo_v1, test_dir, kubeconfig, cluster, instance, monkeypatch
):
    ns = "cartrita-reach-closed"
    with (
        follow_env(test_dir, demo_v1.env_file, kubeconfig, monkeypatch, ns, 30) as resources,
        relay(resources, "redis"),  # nothing listens at the outward address on PostgreSQL's port
        StandInKubelet(kubeconfig, [ns]) as kubelet,
    ):  # fmt: skip
        host = resources["follow"].v1_host_for_v2
        pg_port = resources["v1"].settings().postgres.port
        redis_port = resources["v1"].settings().redis.port
        started = time.monotonic()
        result = materialize(resources, instance, "v1_backup", run_config=FOLLOW)
        took = time.monotonic() - started
        assert not result.success
        (message,) = failure_messages(result)
        assert "Follow mode cannot start; v1 was not changed" in message
        (line,) = [line for line in message.splitlines() if "cannot reach" in line]
        assert f"PostgreSQL at {host}:{pg_port}" in line and f"{redis_port}" not in line
        assert f"namespace {ns}" in line and "CARTRITA_V1_HOST_FOR_V2" in line
        assert "NetworkPolicy" in line and "pg_hba.conf" in line
        assert follow_objects_on_v1(resources) == ([], [])
        assert probe_pods(cluster, ns) == []
        assert_no_password(kubelet, resources)
        print(f"unreachable: the failed v1_backup run took {took:.1f}s")


def test_no_kubelet_is_a_bounded_wait_and_not_a_result(
    demo_v1, test_dir, kubeconfig, cluster, instance, monkeypatch
):
    ns = "cartrita-reach-nokubelet"
    with (
        follow_env(test_dir, demo_v1.env_file, kubeconfig, monkeypatch, ns, 2) as resources,
        relay(resources, "postgres"), relay(resources, "redis"),
    ):  # fmt: skip
        started = time.monotonic()
        result = materialize(resources, instance, "v1_backup", run_config=FOLLOW)
        took = time.monotonic() - started
        assert not result.success
        (message,) = failure_messages(result)
        (line,) = [line for line in message.splitlines() if "probe pod" in line]
        assert f"Could not run a probe pod in namespace {ns}" in line
        assert "Pending after 2s (not scheduled on any node)" in line
        assert "cannot reach" not in message
        assert took < 20, took
        assert follow_objects_on_v1(resources) == ([], [])
        assert probe_pods(cluster, ns) == []
        print(f"no kubelet: the failed v1_backup run took {took:.1f}s (probe timeout 2s)")
