"""A stand-in kubelet, for tests against the control plane of ``support.control_plane``.

That control plane has no scheduler and no kubelet, so a StatefulSet's Pods would stay Pending
forever and a scale-down would wait on Pods nobody stops. `StandInKubelet` does, for the Pods of
the namespaces it is given, the two things of theirs the project's wait logic observes:

- it binds each new Pod to a node (the scheduler's job) and reports it started: phase
  ``Running``, a pod IP, running and ready container statuses, and the ``Ready`` and
  ``ContainersReady`` conditions, through the ``pods/status`` subresource;
- it finishes the deletion of a Pod that is being deleted (a scale-down), as a kubelet does
  once the containers have stopped.

No container ever runs: whatever should answer behind a NodePort is started by the test.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from kubernetes import client, config

NODE = "cartrita-test-node"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(pod: Any, index: int) -> dict[str, Any]:
    """The ``status`` a kubelet reports for a Pod whose containers all started and are ready."""
    now = _now()
    kinds = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    conditions = [{"type": kind, "status": "True", "lastTransitionTime": now} for kind in kinds]
    containers = [
        {"name": c.name, "image": c.image, "imageID": "", "ready": True, "started": True,
         "restartCount": 0, "containerID": f"containerd://{index:064x}",
         "state": {"running": {"startedAt": now}}}
        for c in pod.spec.containers
    ]  # fmt: skip
    ip = f"10.244.0.{index % 250 + 2}"
    return {"phase": "Running", "hostIP": "127.0.0.1", "podIP": ip, "startTime": now,
            "conditions": conditions, "containerStatuses": containers}  # fmt: skip


class StandInKubelet:
    """Plays scheduler + kubelet for the Pods of ``namespaces`` on a background thread.

    Use as a context manager; `step` does one pass (tests may call it directly).
    """

    def __init__(self, kubeconfig: str, namespaces: list[str], interval: float = 0.2) -> None:
        self.api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
        self.namespaces = list(namespaces)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stand-in-kubelet", daemon=True)
        self._started = 0
        self.errors: list[str] = []

    def __enter__(self) -> StandInKubelet:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except client.ApiException as err:  # e.g. a namespace being deleted; try again
                self.errors.append(f"{err.status} {err.reason}")

    def step(self) -> None:
        """Start every new Pod and finish every deletion, once, in every watched namespace."""
        for namespace in self.namespaces:
            for pod in self.api.list_namespaced_pod(namespace).items:
                if pod.metadata.deletion_timestamp:
                    self.api.delete_namespaced_pod(
                        pod.metadata.name, namespace, grace_period_seconds=0
                    )
                    continue
                if not pod.spec.node_name:
                    self._bind(pod.metadata.name, namespace)
                if (pod.status.phase or "") != "Running":
                    self._start(pod, namespace)

    def _bind(self, name: str, namespace: str) -> None:
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name=name),
            target=client.V1ObjectReference(kind="Node", name=NODE, api_version="v1"),
        )
        # the generated client cannot parse the Status the binding call answers with
        self.api.create_namespaced_binding(namespace, binding, _preload_content=False)

    def _start(self, pod: Any, namespace: str) -> None:
        name = pod.metadata.name
        self._started += 1
        body = {"status": running_status(pod, self._started)}
        self.api.patch_namespaced_pod_status(name, namespace, body)
