"""A short-lived probe pod: run one command in a namespace, wait for its end, read its exit code,
delete it.

The pod is created through the `Cluster` seam like every other object (server-side apply as
``cartrita-assets``), labelled as a cartrita probe, owned by nothing (so deleting it is this
module's job: it is deleted whatever happens, also when the wait times out), with
``restartPolicy: Never`` and ``activeDeadlineSeconds`` (a pod left behind by a killed process
still ends by itself), no service account token and no environment. The wait is bounded: a pod
that never starts (no node, an image that cannot be pulled) is reported as not run, with its
phase, reason and Warning events, never as a result.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cartrita_assets.cluster.k8s.cluster import FIELD_MANAGER, Cluster, ClusterError, Obj
from cartrita_assets.cluster.k8s.wait import hints

PROBE_NAME = "cartrita-reach-probe"
PROBE_LABELS = {
    "app.kubernetes.io/name": PROBE_NAME,
    "app.kubernetes.io/component": "probe",
    "app.kubernetes.io/part-of": "cartrita",
    "app.kubernetes.io/managed-by": FIELD_MANAGER,
}
PROBE_SELECTOR = f"app.kubernetes.io/name={PROBE_NAME}"
TERMINAL = ("Succeeded", "Failed")
CREATE_RETRY = 10.0  # seconds a new namespace may take to get its default ServiceAccount
MAX_WARNINGS = 4


@dataclass(frozen=True)
class ProbeOutcome:
    """What became of a probe pod.

    Attributes:
        namespace: where it ran.
        finished: its container terminated with an exit code.
        phase: the pod's last phase seen (``Pending``, ``Running``, ``Failed``...).
        reason: why it is in that phase, when the cluster said (``Unschedulable``,
            ``ErrImagePull``, ``DeadlineExceeded``, not scheduled on any node...).
        exit_code: the container's exit code, when it terminated.
        message: the container's termination message (its output, when it failed).
        waited: seconds waited for it.
        image: the image it ran (or tried to).
        warnings: recent Warning events about it, one line each.
        checks: what to check for those warnings.
    """

    namespace: str
    finished: bool
    phase: str
    reason: str = ""
    exit_code: int | None = None
    message: str = ""
    waited: float = 0.0
    image: str = ""
    warnings: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()


def probe_pod(namespace: str, image: str, command: list[str], deadline: float) -> Obj:
    """A probe Pod running ``command`` in ``image`` (a fresh name each time).

    Args:
        namespace: where it runs.
        image: the container image.
        command: the container's command (no credential may be in it: it is readable by anyone
            who may read pods in the namespace).
        deadline: seconds after which the cluster ends it (``activeDeadlineSeconds``).
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{PROBE_NAME}-{secrets.token_hex(4)}",
            "namespace": namespace,
            "labels": dict(PROBE_LABELS),
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": max(1, math.ceil(deadline)),
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 999,  # the images' `postgres` user
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                    # the output becomes the termination message when the probe fails
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "200m", "memory": "64Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def pod_outcome(live: Obj | None, namespace: str, image: str, waited: float) -> ProbeOutcome:
    """Read a probe pod's state: its phase, why, and its container's exit code and message.

    Args:
        live: the Pod as the API server returns it (None: it does not exist).
        namespace: its namespace.
        image: its image, for messages.
        waited: seconds waited so far.
    """
    if live is None:
        return ProbeOutcome(namespace, False, "", "the pod does not exist", waited=waited,
                            image=image)  # fmt: skip
    status: dict[str, Any] = live.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    containers = status.get("containerStatuses") or []
    state: dict[str, Any] = (containers[0].get("state") or {}) if containers else {}
    terminated = state.get("terminated")
    # killed at activeDeadlineSeconds: its exit code is the kill's, not the command's answer
    killed = status.get("reason") == "DeadlineExceeded"
    if terminated is not None and terminated.get("exitCode") is not None and not killed:
        return ProbeOutcome(
            namespace, True, phase, str(terminated.get("reason") or ""),
            exit_code=int(terminated["exitCode"]), message=str(terminated.get("message") or ""),
            waited=waited, image=image,
        )  # fmt: skip
    return ProbeOutcome(namespace, False, phase, _reason(live, status, state), waited=waited,
                        image=image)  # fmt: skip


def _reason(live: Obj, status: dict[str, Any], state: dict[str, Any]) -> str:
    waiting = state.get("waiting") or {}
    if status.get("reason"):  # e.g. DeadlineExceeded, Evicted
        return f"{status['reason']}: {status.get('message') or ''}".rstrip(": ")
    if waiting.get("reason"):  # e.g. ErrImagePull, ImagePullBackOff, ContainerCreating
        return f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            text = f"{condition.get('reason') or 'not scheduled'}: {condition.get('message') or ''}"
            return text.rstrip(": ")
    if not (live.get("spec") or {}).get("nodeName"):
        return "not scheduled on any node"
    return ""


def warning_lines(cluster: Cluster, namespace: str, name: str) -> list[str]:
    """The latest distinct Warning events about the pod ``name``, ``Reason: message`` each."""
    lines: dict[str, None] = {}
    for event in cluster.events_for(namespace, name):
        if (
            event.get("type") == "Warning"
            and (event.get("involvedObject") or {}).get("name") == name
        ):
            line = f"{event.get('reason') or ''}: {event.get('message') or ''}"
            lines.pop(line, None)
            lines[line] = None
    return list(lines)[-MAX_WARNINGS:]


def run_probe(
    cluster: Cluster,
    pod: Obj,
    timeout: float,
    log: Callable[[str], None],
    poll: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeOutcome:
    """Create the probe pod, wait (at most ``timeout`` seconds) for it to end, delete it.

    Args:
        cluster: the cluster seam.
        pod: from `probe_pod`.
        timeout: seconds to wait in all, creating included.
        log: receives what is happening.
        poll: seconds between reads.
        clock: monotonic seconds (injectable for tests).
        sleep: sleeps seconds (injectable for tests).

    Returns:
        The outcome; ``finished`` is False when the pod did not run to its end in time.

    Raises:
        ClusterError: the API server refused the pod (other than a namespace's default
            ServiceAccount not made yet, which is waited for).
    """
    meta = pod["metadata"]
    name, namespace = str(meta["name"]), str(meta["namespace"])
    image = str(pod["spec"]["containers"][0]["image"])
    start = clock()
    try:
        _create(cluster, pod, start, min(timeout, CREATE_RETRY), clock, sleep)
        log(f"Probe pod {namespace}/{name} created ({image}); waiting up to {timeout:.0f}s")
        while True:
            waited = clock() - start
            live = cluster.get("v1", "Pod", name, namespace)
            phase = str(((live or {}).get("status") or {}).get("phase") or "")
            if live is None or phase in TERMINAL or waited >= timeout:
                outcome = pod_outcome(live, namespace, image, waited)
                break
            sleep(max(0.0, min(poll, timeout - waited)))
        if not outcome.finished:
            outcome = _with_warnings(cluster, outcome, name)
        log(f"Probe pod {namespace}/{name}: {outcome.phase or 'gone'}"
            + (f", exit code {outcome.exit_code}" if outcome.finished else "")
            + f" after {outcome.waited:.1f}s")  # fmt: skip
        return outcome
    finally:
        _delete(cluster, name, namespace, log)


def _create(
    cluster: Cluster,
    pod: Obj,
    start: float,
    retry: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    while True:
        try:
            cluster.apply(pod)
            return
        except ClusterError as exc:
            # a namespace just created gets its default ServiceAccount from the controller
            # manager a moment later; until then admission refuses pods in it
            if "serviceaccount" not in str(exc).lower() or clock() - start >= retry:
                raise
        sleep(0.5)


def _with_warnings(cluster: Cluster, outcome: ProbeOutcome, name: str) -> ProbeOutcome:
    try:
        warnings = warning_lines(cluster, outcome.namespace, name)
    except ClusterError as exc:
        warnings = [f"(could not read events: {exc})"]
    return replace(
        outcome, warnings=tuple(warnings), checks=tuple(hints([*warnings, outcome.reason]))
    )


def _delete(cluster: Cluster, name: str, namespace: str, log: Callable[[str], None]) -> None:
    try:
        cluster.delete("v1", "Pod", name, namespace)
    except ClusterError as exc:
        log(
            f"Could not delete probe pod {namespace}/{name} ({exc}); it ends by itself "
            f"(activeDeadlineSeconds): `kubectl -n {namespace} delete pod {name}` removes it."
        )
