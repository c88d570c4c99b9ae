"""Can v2's pods reach v1: the addresses, the probe pod, and what its outcome turns into (pure
decisions, no server; the probe pod on the real API server is in tests/k8s/test_reach_probe.py)."""

from __future__ import annotations

import json

import pytest
from support.k8s_standin import InMemoryCluster

from cartrita_assets.cluster.k8s.cluster import ClusterError
from cartrita_assets.cluster.k8s.probe import (
    PROBE_LABELS,
    ProbeOutcome,
    pod_outcome,
    probe_pod,
    run_probe,
)
from cartrita_assets.envfile import PostgresSettings, RedisSettings, V1Settings
from cartrita_assets.follow.preflight import V1Facts, is_loopback, problems
from cartrita_assets.follow.reach import (
    Address,
    addresses_for_v2,
    probe_command,
    reach_problem,
    unreachable,
)

NS = "data-stack"
PG = Address("PostgreSQL", "10.0.0.5", 5432)
REDIS = Address("Redis", "10.0.0.5", 6379)
BOTH = [PG, REDIS]
PASSWORD = "pg-Secret-4242"
REDIS_PASSWORD = "redis-Secret-4242"


def v1(redis: bool = True) -> V1Settings:
    pg = PostgresSettings(host="db.internal", port=5433, user="app", password=PASSWORD,
                          dbname="app")  # fmt: skip
    rds = RedisSettings(host="cache.internal", port=6380, password=REDIS_PASSWORD)
    return V1Settings(source="test", postgres=pg, redis=rds if redis else None, other_keys={})


def ended(code: int, message: str = "") -> ProbeOutcome:
    return ProbeOutcome(NS, True, "Failed" if code else "Succeeded", exit_code=code,
                        message=message, waited=1.2, image="pgvector/pgvector:pg18")  # fmt: skip


def test_v2_connects_to_each_services_own_host_unless_told_another() -> None:
    assert addresses_for_v2(v1()) == [
        Address("PostgreSQL", "db.internal", 5433),
        Address("Redis", "cache.internal", 6380),
    ]
    assert [a.host for a in addresses_for_v2(v1(), " 192.0.2.7 ")] == ["192.0.2.7"] * 2
    assert addresses_for_v2(v1(redis=False)) == [Address("PostgreSQL", "db.internal", 5433)]
    assert Address("Redis", "fd00::7", 6379).where == "[fd00::7]:6379"


def test_all_reached_is_no_problem() -> None:
    assert unreachable(ended(0), BOTH) == []
    assert reach_problem(ended(0), BOTH) is None


@pytest.mark.parametrize(
    ("code", "named", "not_named"),
    [(11, ["PostgreSQL at 10.0.0.5:5432"], ["Redis at"]),
     (12, ["Redis at 10.0.0.5:6379"], ["PostgreSQL at"]),
     (13, ["PostgreSQL at 10.0.0.5:5432", "Redis at 10.0.0.5:6379"], [])],
)  # fmt: skip
def test_an_unreachable_address_is_one_message_naming_it_and_the_fix(
    code: int, named: list[str], not_named: list[str]
) -> None:
    output = (
        "unreachable PostgreSQL 10.0.0.5:5432: 10.0.0.5:5432 - no response\n"
        "unreachable Redis 10.0.0.5:6379: no answer within 5s\n"
    )
    message = reach_problem(ended(code, output), BOTH)
    assert message is not None and "\n" not in message
    for words in [*named, f"namespace {NS}", "CARTRITA_V1_HOST_FOR_V2", "v1_host_for_v2",
                  "firewall", "pg_hba.conf", "NetworkPolicy"]:  # fmt: skip
        assert words in message
    for words in not_named:
        assert words not in message
    if code & 1:
        assert "(10.0.0.5:5432 - no response)" in message
    assert "Could not run" not in message


def test_a_pod_that_never_ran_is_not_mistaken_for_an_answer() -> None:
    pending = ProbeOutcome(NS, False, "Pending", "not scheduled on any node", waited=60.2,
                           image="pgvector/pgvector:pg18")  # fmt: skip
    assert unreachable(pending, BOTH) is None
    message = reach_problem(pending, BOTH)
    assert message is not None
    assert message.startswith(f"Could not run a probe pod in namespace {NS}")
    assert "Pending after 60s (not scheduled on any node)" in message
    assert "pgvector/pgvector:pg18" in message and "CARTRITA_REACH_PROBE_TIMEOUT" in message
    assert "cannot reach" not in message and "unknown" in message


@pytest.mark.parametrize("code", [1, 2, 126, 127, 137, 14])
def test_an_exit_code_the_probe_never_gives_means_the_probe_broke(code: int) -> None:
    message = reach_problem(ended(code, "bash: pg_isready: command not found"), BOTH)
    assert message is not None and message.startswith("Could not run a probe pod")
    assert f"exited with code {code}: bash: pg_isready: command not found" in message
    assert "pg_isready on its PATH" in message


def test_the_unreachable_bits_only_count_for_addresses_that_were_probed() -> None:
    assert unreachable(ended(12), [PG]) is None  # bit 2 names no address
    assert unreachable(ended(11), [PG]) == [PG]


def test_warnings_and_their_checks_are_quoted() -> None:
    pulling = ProbeOutcome(NS, False, "Pending", "ErrImagePull: not found", waited=60,
                           image="x", warnings=("Failed: pull access denied",),
                           checks=("the image name and tag exist",))  # fmt: skip
    message = reach_problem(pulling, BOTH)
    assert message is not None
    assert "Warning events: Failed: pull access denied" in message
    assert "Check the image name and tag exist;" in message


def test_the_static_check_looks_at_the_address_v2_uses() -> None:
    ready = dict(wal_level="logical", free_slots=1, free_senders=1, can_replicate=True)
    remote = V1Facts(**ready, host="10.0.0.5", redis_host="10.0.0.5")
    assert problems(remote, full_identity_consent=False, topology="kubernetes") == []
    local_redis = V1Facts(**ready, host="10.0.0.5", redis_host="127.0.0.2")
    (found,) = problems(local_redis, full_identity_consent=False, topology="kubernetes")
    assert "Redis host is 127.0.0.2" in found and "PostgreSQL" not in found
    assert "CARTRITA_V1_HOST_FOR_V2" in found
    assert problems(local_redis, full_identity_consent=False, topology="local") == []
    assert all(map(is_loopback, ["", "localhost", "LOCALHOST", "127.0.0.2", "[::1]", "::1"]))
    assert not any(map(is_loopback, ["10.0.0.5", "db.internal", "fd00::1"]))


def test_the_probe_pod_carries_hosts_and_ports_only() -> None:
    addresses = addresses_for_v2(v1())
    pod = probe_pod(NS, "pgvector/pgvector:pg18", probe_command(addresses), 7.2)
    text = json.dumps(pod)
    assert PASSWORD not in text and REDIS_PASSWORD not in text
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert "env" not in container and "envFrom" not in container and "volumes" not in spec
    assert container["command"][-6:] == ["PostgreSQL", "db.internal", "5433",
                                         "Redis", "cache.internal", "6380"]  # fmt: skip
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 8
    assert spec["automountServiceAccountToken"] is False
    assert pod["metadata"]["labels"] == PROBE_LABELS and "ownerReferences" not in pod["metadata"]
    assert pod["metadata"]["name"] != probe_pod(NS, "x", ["true"], 1)["metadata"]["name"]


def test_pod_outcome_reads_exit_code_or_why_it_did_not_run() -> None:
    terminated = {"terminated": {"exitCode": 11, "reason": "Error", "message": "m"}}
    done = {
        "spec": {"nodeName": "n"},
        "status": {"phase": "Failed", "containerStatuses": [{"state": terminated}]},
    }
    outcome = pod_outcome(done, NS, "img", 2.0)
    assert (outcome.finished, outcome.exit_code, outcome.message) == (True, 11, "m")
    unscheduled = pod_outcome({"spec": {}, "status": {"phase": "Pending"}}, NS, "img", 3.0)
    assert not unscheduled.finished and unscheduled.reason == "not scheduled on any node"
    waiting = {"waiting": {"reason": "ErrImagePull", "message": "no such image"}}
    pulling = {
        "spec": {"nodeName": "n"},
        "status": {"phase": "Pending", "containerStatuses": [{"state": waiting}]},
    }
    assert pod_outcome(pulling, NS, "img", 3.0).reason == "ErrImagePull: no such image"
    deadline = {"spec": {"nodeName": "n"},
                "status": {"phase": "Failed", "reason": "DeadlineExceeded",
                           "containerStatuses": [{"state": terminated}]}}  # fmt: skip
    outcome = pod_outcome(deadline, NS, "img", 3.0)
    assert not outcome.finished and outcome.reason == "DeadlineExceeded"
    assert not pod_outcome(None, NS, "img", 0).finished


def test_a_probe_that_times_out_is_deleted_and_the_wait_is_bounded() -> None:
    cluster = InMemoryCluster([NS])
    now = [0.0]
    pod = probe_pod(NS, "img", ["true"], 5)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    outcome = run_probe(cluster, pod, 5.0, lambda _m: None, poll=1.0, clock=lambda: now[0],
                        sleep=sleep)  # fmt: skip
    assert not outcome.finished and outcome.phase == "Pending" and 5.0 <= outcome.waited < 6.0
    assert cluster.get("v1", "Pod", pod["metadata"]["name"], NS) is None


class RefusingFirst(InMemoryCluster):
    """The in-memory cluster whose first ``refusals`` pod creations fail as the API server's
    ServiceAccount admission refuses pods in a namespace made a moment ago (or with ``text``)."""

    def __init__(self, refusals: int, text: str) -> None:
        super().__init__([NS])
        self.refusals, self.text, self.deleted = refusals, text, 0

    def apply(self, obj: dict, **kwargs: object) -> dict:
        if obj["kind"] == "Pod" and self.refusals:
            self.refusals -= 1
            raise ClusterError(f"Cannot apply Pod: HTTP 403 Forbidden: {self.text}", 403)
        return super().apply(obj, **kwargs)  # type: ignore[arg-type]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        self.deleted += 1
        return super().delete(api_version, kind, name, namespace)


def run_against(cluster: InMemoryCluster, timeout: float = 30.0) -> ProbeOutcome:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pod = probe_pod(NS, "img", ["true"], timeout)
    return run_probe(cluster, pod, timeout, lambda _m: None, poll=1.0, clock=lambda: now[0],
                     sleep=sleep)  # fmt: skip


def test_a_new_namespace_without_its_service_account_yet_is_waited_for() -> None:
    missing = (
        'error looking up service account data-stack/default: serviceaccount "default" not found'
    )
    cluster = RefusingFirst(2, missing)
    outcome = run_against(cluster)
    assert cluster.refusals == 0 and outcome.phase == "Pending" and cluster.deleted == 1


def test_any_other_refusal_of_the_pod_is_raised_and_nothing_is_left() -> None:
    cluster = RefusingFirst(1, 'pods "x" is forbidden: exceeded quota: compute')
    with pytest.raises(ClusterError, match="exceeded quota"):
        run_against(cluster)
    assert cluster.deleted == 1 and cluster.list("v1", "Pod", NS) == []


def test_a_pod_killed_at_its_deadline_or_gone_says_so() -> None:
    killed = ProbeOutcome(NS, False, "Failed", "DeadlineExceeded", waited=31)
    message = reach_problem(killed, BOTH)
    assert message is not None and "the pod ended Failed after 31s (DeadlineExceeded)" in message
    gone = reach_problem(ProbeOutcome(NS, False, "", "the pod does not exist", waited=4), BOTH)
    assert gone is not None and "the pod was gone after 4s (the pod does not exist)" in gone
