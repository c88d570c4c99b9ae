"""A stand-in kubelet, for tests against the control plane of ``support.control_plane``.

That control plane has no scheduler and no kubelet, so a StatefulSet's Pods would stay Pending
forever and a scale-down would wait on Pods nobody stops. `StandInKubelet` does, for the Pods of
the namespaces it is given, the two things of theirs the project's wait logic observes:

- it binds each new Pod to a node (the scheduler's job) and reports it started: phase
  ``Running``, a pod IP, running and ready container statuses, and the ``Ready`` and
  ``ContainersReady`` conditions, through the ``pods/status`` subresource;
- it finishes the deletion of a Pod that is being deleted (a scale-down), as a kubelet does
  once the containers have stopped.

No container of those Pods runs: whatever should answer behind a NodePort is started by the
test.

One kind of Pod is run: the project's probe pods (labelled ``PROBE_SELECTOR``, see
``cartrita_assets/cluster/k8s/probe.py``). For those the stand-in does what a kubelet does with
a ``restartPolicy: Never`` Pod whose image is at hand: it runs the container's command and args
as a process on this machine, as if the Pod had host networking (its connections leave from this
machine, so "reachable" here means reachable from this machine, not through a cluster's pod
network, CNI or NetworkPolicy), with only ``PATH`` in its environment (the bundled PostgreSQL
client programs first, as the pgvector image has them), none of the test process's variables,
killed at ``activeDeadlineSeconds``. Then it reports the end through ``pods/status`` as a kubelet
does: phase ``Succeeded`` (exit code 0) or ``Failed``, the container's ``terminated`` state with
its exit code, and, for ``terminationMessagePolicy: FallbackToLogsOnError`` and a non-zero exit,
the last 80 lines / 2048 bytes of its output as the message (a kubelet reads the termination
message file first; the stand-in has none). A deadline that passes reports ``Failed`` with
reason ``DeadlineExceeded``. What it does not do: pull or check the image (the command runs
with this machine's bash, coreutils and pg_isready, not the image's), enforce the security
context or resource limits, or write container logs. Every probe Pod it ran is kept in
``probes_run`` as the API server gave it, for tests to inspect.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from kubernetes import client, config

from cartrita_assets.cluster.k8s.probe import PROBE_SELECTOR
from cartrita_assets.pg.binaries import bin_dir

NODE = "cartrita-test-node"
TERMINAL = ("Succeeded", "Failed")
LOG_LINES, LOG_BYTES = 80, 2048  # what a kubelet keeps of the output as a termination message


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
        self.probes_run: list[dict[str, Any]] = []

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
                if _is_probe(pod):
                    if (pod.status.phase or "") not in TERMINAL:
                        self._run_probe(pod, namespace)
                    continue
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

    def _run_probe(self, pod: Any, namespace: str) -> None:
        """Run a probe Pod's only container to its end and report it, as a kubelet would."""
        self.probes_run.append(self.api.api_client.sanitize_for_serialization(pod))
        (container,) = pod.spec.containers
        started = _now()
        path = f"{bin_dir()}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        deadline = pod.spec.active_deadline_seconds
        with tempfile.TemporaryDirectory(prefix="probe-pod-") as cwd:
            try:
                done = subprocess.run(
                    [*(container.command or []), *(container.args or [])],
                    env={"PATH": path}, cwd=cwd, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, timeout=deadline, check=False,
                )  # fmt: skip
                code, output, reason = done.returncode, done.stdout.decode(errors="replace"), ""
            except subprocess.TimeoutExpired as exc:
                code, output, reason = (
                    137,
                    (exc.stdout or b"").decode(errors="replace"),
                    ("DeadlineExceeded"),
                )
        message = ""
        if code != 0 and container.termination_message_policy == "FallbackToLogsOnError":
            message = "\n".join(output.splitlines()[-LOG_LINES:])[-LOG_BYTES:]
        self._started += 1
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "message": message, "startedAt": started, "finishedAt": _now(),
                      "containerID": f"containerd://{self._started:064x}"}  # fmt: skip
        status: dict[str, Any] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": started,
            "containerStatuses": [
                {"name": container.name, "image": container.image, "imageID": "",
                 "ready": False, "started": False, "restartCount": 0,
                 "containerID": terminated["containerID"], "state": {"terminated": terminated}}
            ],
        }  # fmt: skip
        if reason:
            status["reason"] = reason
            status["message"] = "Pod was active on the node longer than the specified deadline"
        self.api.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": status})


def _is_probe(pod: Any) -> bool:
    key, _, value = PROBE_SELECTOR.partition("=")
    return (pod.metadata.labels or {}).get(key) == value
