"""Wait for StatefulSets to become ready or to scale down, explaining a timeout.

A timeout's message names what is still missing, quotes the most recent Warning events of the
StatefulSets, their pods and their PersistentVolumeClaims (reason and message), and says what to
check for each kind of failure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cartrita_assets.cluster.k8s.cluster import Cluster, ClusterError

LOG_EVERY = 10.0
MAX_EVENTS = 8

_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"ImagePull|ErrImage|InvalidImageName", re.I),
        "the image name and tag exist and the node can pull them (registry, imagePullSecrets)",
    ),
    (
        re.compile(r"unbound immediate PersistentVolumeClaims|ProvisioningFailed", re.I),
        "the PersistentVolumeClaims can bind: `kubectl get pvc,storageclass` (a default "
        "StorageClass or the storageClassName in the manifest)",
    ),
    (
        re.compile(r"FailedScheduling", re.I),
        "a node has the CPU/memory the pods request and no taint or selector excludes it",
    ),
    (
        re.compile(r"Readiness probe|Liveness probe|Unhealthy|BackOff|CrashLoop", re.I),
        "the container logs (`kubectl logs`) for why the server does not start or answer",
    ),
    (
        re.compile(r"FailedMount|FailedAttachVolume|CreateContainerConfigError", re.I),
        "the Secrets, ConfigMaps and volumes the pods mount exist in the namespace",
    ),
    (
        re.compile(r"FailedCreate", re.I),
        "the StatefulSet's events: the controller could not create pods (quota, admission)",
    ),
)


@dataclass(frozen=True)
class _State:
    name: str
    exists: bool
    wanted: int = 0
    ready: int = 0
    updated: int = 0
    current: int = 0  # status.replicas: pods that exist
    observed: bool = True


def _state(cluster: Cluster, namespace: str, name: str) -> _State:
    obj = cluster.get("apps/v1", "StatefulSet", name, namespace)
    if obj is None:
        return _State(name, exists=False)
    spec: dict[str, Any] = obj.get("spec") or {}
    status: dict[str, Any] = obj.get("status") or {}
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    return _State(
        name,
        exists=True,
        wanted=int(spec.get("replicas", 1)),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        current=int(status.get("replicas") or 0),
        observed=int(status.get("observedGeneration") or 0) >= generation,
    )


def _is_ready(state: _State) -> bool:
    return (
        state.exists
        and state.observed
        and state.ready == state.wanted
        and state.updated == state.wanted
    )


def _ready_text(state: _State) -> str:
    if not state.exists:
        return f"{state.name} does not exist"
    text = f"{state.name} {state.ready}/{state.wanted} ready"
    if state.ready == state.wanted and state.updated != state.wanted:
        text += f" ({state.updated} updated)"
    elif state.ready == state.wanted and not state.observed:
        text += " (controller has not seen the latest spec yet)"
    return text


def wait_statefulsets_ready(
    cluster: Cluster,
    namespace: str,
    names: list[str],
    timeout: float,
    log: Callable[[str], None],
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until every StatefulSet has all its replicas ready and updated.

    Ready means ``status.readyReplicas == status.updatedReplicas == spec.replicas`` and
    ``status.observedGeneration >= metadata.generation``.

    Args:
        cluster: the cluster seam.
        namespace: where the StatefulSets live.
        names: their names, e.g. ``["postgres", "redis"]``.
        timeout: seconds to wait in all.
        log: receives progress lines, at most one every ~10 s.
        poll: seconds between reads.
        clock: monotonic seconds (injectable for tests).
        sleep: sleeps seconds (injectable for tests).

    Raises:
        ClusterError: on timeout, with the recent Warning events and what to check.
    """
    states = _poll(
        cluster, namespace, names, timeout, log, poll, clock, sleep, _is_ready, _ready_text
    )
    if states is None:
        log(f"{', '.join(names)} ready in namespace {namespace}")
        return
    raise ClusterError(_timeout_message(cluster, namespace, names, timeout, states, "ready"))


def wait_scaled_down(
    cluster: Cluster,
    namespace: str,
    names: list[str],
    timeout: float,
    log: Callable[[str], None],
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until every StatefulSet runs no pod (status.replicas and readyReplicas are 0).

    A StatefulSet that does not exist counts as scaled down.

    Args:
        cluster: the cluster seam.
        namespace: where the StatefulSets live.
        names: their names.
        timeout: seconds to wait in all.
        log: receives progress lines, at most one every ~10 s.
        poll: seconds between reads.
        clock: monotonic seconds (injectable for tests).
        sleep: sleeps seconds (injectable for tests).

    Raises:
        ClusterError: on timeout, with the recent Warning events and what to check.
    """
    states = _poll(
        cluster, namespace, names, timeout, log, poll, clock, sleep, _is_down, _down_text
    )
    if states is None:
        log(f"{', '.join(names)} scaled down in namespace {namespace}")
        return
    raise ClusterError(_timeout_message(cluster, namespace, names, timeout, states, "down"))


def _is_down(state: _State) -> bool:
    return not state.exists or (state.current == 0 and state.ready == 0)


def _down_text(state: _State) -> str:
    if not state.exists:
        return f"{state.name} does not exist"
    text = f"{state.name} {state.current} pod(s), {state.ready} ready"
    if state.wanted:
        text += f" (spec.replicas is {state.wanted}: scale it to 0 first)"
    return text


def _poll(
    cluster: Cluster,
    namespace: str,
    names: list[str],
    timeout: float,
    log: Callable[[str], None],
    poll: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    done: Callable[[_State], bool],
    text: Callable[[_State], str],
) -> list[_State] | None:
    """Poll until ``done`` holds for all; None on success, else the last states."""
    start = clock()
    last_log: float | None = None
    while True:
        states = [_state(cluster, namespace, name) for name in names]
        if all(done(s) for s in states):
            return None
        now = clock()
        elapsed = now - start
        if elapsed >= timeout:
            return states
        if last_log is None or now - last_log >= LOG_EVERY:
            progress = ", ".join(text(s) for s in states)
            log(f"{progress}, waiting {elapsed:.0f}s of {timeout:.0f}s")
            last_log = now
        sleep(max(0.0, min(poll, timeout - elapsed)))


def _belongs(involved: dict[str, Any], names: list[str]) -> bool:
    """The StatefulSet itself, its pods (``name-0``) or its PVCs (``claim-name-0``)."""
    kind, event_name = involved.get("kind"), str(involved.get("name") or "")
    claim = "(?:.+-)?" if kind == "PersistentVolumeClaim" else ""
    return any(
        event_name == name or re.fullmatch(rf"{claim}{re.escape(name)}-\d+", event_name)
        for name in names
    )


def relevant_warnings(cluster: Cluster, namespace: str, names: list[str]) -> list[str]:
    """The latest distinct Warning events about the StatefulSets, their pods and PVCs.

    Args:
        cluster: the cluster seam.
        namespace: where they live.
        names: StatefulSet names.

    Returns:
        Up to 8 lines ``Kind/name Reason: message (xN)``, oldest first.
    """
    events = [
        e
        for e in cluster.events_for(namespace, "")
        if e.get("type") == "Warning" and _belongs(e.get("involvedObject") or {}, names)
    ]
    lines: dict[tuple[str, str, str], str] = {}
    for event in events:  # newest last: a later duplicate replaces the earlier one
        obj = event.get("involvedObject") or {}
        who = f"{obj.get('kind', '?')}/{obj.get('name', '?')}"
        reason, message = str(event.get("reason") or ""), str(event.get("message") or "")
        count = int(event.get("count") or 1)
        key = (who, reason, message)
        lines.pop(key, None)
        lines[key] = f"{who} {reason}: {message}" + (f" (x{count})" if count > 1 else "")
    return list(lines.values())[-MAX_EVENTS:]


def hints(warnings: list[str]) -> list[str]:
    """What to check for these Warning event lines (image pull, scheduling, mounts...)."""
    return [hint for pattern, hint in _HINTS if any(pattern.search(w) for w in warnings)]


def _timeout_message(
    cluster: Cluster,
    namespace: str,
    names: list[str],
    timeout: float,
    states: list[_State],
    goal: str,
) -> str:
    describe = _ready_text if goal == "ready" else _down_text
    done = _is_ready if goal == "ready" else _is_down
    pending = [s for s in states if not done(s)]
    try:
        warnings = relevant_warnings(cluster, namespace, names)
    except ClusterError as exc:
        warnings = [f"(could not read events: {exc})"]
    lines = [
        f"Timed out after {timeout:.0f}s waiting for StatefulSet(s) in namespace {namespace} "
        f"to be {goal}: " + ", ".join(describe(s) for s in pending) + "."
    ]
    if warnings:
        lines.append("Recent warning events:")
        lines += [f"  - {w}" for w in warnings]
    else:
        lines.append("No warning events were recorded for them.")
    checks = hints(warnings) or [_default_check(namespace, pending, goal)]
    lines.append("Check: " + "; ".join(checks) + f". See `kubectl -n {namespace} get events`.")
    return "\n".join(lines)


def _default_check(namespace: str, pending: list[_State], goal: str) -> str:
    name = pending[0].name if pending else "<name>"
    if goal == "down":
        return (
            f"whether pods are stuck Terminating (`kubectl -n {namespace} get pods`), e.g. on an "
            "unreachable node or behind a finalizer"
        )
    return f"the pods' status and events: `kubectl -n {namespace} describe pod {name}-0`"
