"""The k8s tests run against a real control plane, started once per test run
(``support.control_plane``).

Without its binaries they skip and say how to get them; under ``CI=true`` that is a failure.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.control_plane import ControlPlane, assets_or_skip

from cartrita_assets.cluster import k8s_target
from cartrita_assets.cluster.k8s import wait
from cartrita_assets.cluster.k8s.cluster import KubernetesCluster

# seconds between the target's reads of its StatefulSets while it waits (the product reads every 2)
READINESS_POLL = 0.2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/k8s/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the whole test run."""
    assets = assets_or_skip()
    folder = Path(tempfile.mkdtemp(prefix="cartrita-k8s-"))
    plane = ControlPlane(assets, folder / "control-plane")
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> str:
    """The admin kubeconfig of the test run's control plane (0600)."""
    return str(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def cluster(kubeconfig: str) -> KubernetesCluster:
    """The project's cluster seam, bound to the test run's control plane."""
    return KubernetesCluster.from_environment(kubeconfig=kubeconfig)


@pytest.fixture(autouse=True)
def prompt_readiness_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in kubelet marks a Pod ready within a fraction of a second, so the kubernetes
    target reads its StatefulSets every READINESS_POLL seconds instead of every 2 while it waits
    for them to be ready or scaled down: the same wait on the same API server, each about 1.5 s
    sooner. (The wait at the 2 s cadence is covered with an injected clock in
    tests/unit/test_k8s_cluster.py.)"""
    for name in ("wait_statefulsets_ready", "wait_scaled_down"):
        waiter = functools.partial(getattr(wait, name), poll=READINESS_POLL)
        monkeypatch.setattr(k8s_target, name, waiter)
