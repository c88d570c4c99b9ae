"""Can v2 reach v1? The addresses v2 connects to, the probe that tries them, and its verdict.

In follow mode v2's PostgreSQL (the subscription) and Redis (``REPLICAOF``) open connections to
v1 themselves. In the kubernetes topology they do so from v2's pods, so preflight runs a short
probe there: a command in v2's PostgreSQL image that opens a TCP connection to each address
(``pg_isready`` for PostgreSQL, a bare connect for Redis) with no credential at all. This module
holds the parts that are pure decisions: which addresses, the probe's command, and the message a
probe's outcome turns into. Running the probe is the v2 target's business
(``cluster/k8s/probe.py`` for the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

from cartrita_assets.cluster.k8s.probe import ProbeOutcome
from cartrita_assets.envfile import V1Settings

HOST_SETTING = "CARTRITA_V1_HOST_FOR_V2"
TIMEOUT_SETTING = "CARTRITA_REACH_PROBE_TIMEOUT"
CONNECT_TIMEOUT = 5  # seconds each address may take to answer, inside the probe
UNREACHABLE_BASE = 10  # exit code 10 + bit mask of the unreachable addresses (1 PG, 2 Redis)
MESSAGE_LIMIT = 600  # characters of the probe's own output quoted in a message


@dataclass(frozen=True)
class Address:
    """One v1 service as v2 connects to it.

    Attributes:
        service: ``PostgreSQL`` or ``Redis``.
        host: the host v2 uses (``v1_host_for_v2`` when set, else the service's own host).
        port: the service's port.
    """

    service: str
    host: str
    port: int

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def addresses_for_v2(v1: V1Settings, v1_host_for_v2: str = "") -> list[Address]:
    """What v2 connects to in follow mode: v1's PostgreSQL, then v1's Redis when there is one.

    Args:
        v1: v1's settings (its environment file).
        v1_host_for_v2: the host v2 uses for both; empty: each service's own host.
    """
    override = v1_host_for_v2.strip()
    out = [Address("PostgreSQL", override or v1.postgres.host, v1.postgres.port)]
    if v1.redis is not None:
        out.append(Address("Redis", override or v1.redis.host, v1.redis.port))
    return out


# Arguments: triples of (service, host, port). For each: PostgreSQL through pg_isready (exit 0
# accepting or 1 rejecting means a server answered), anything else through a bare TCP connect.
# One line per address on stdout; exit 0 when all answered, else 10 + the bits of those that
# did not (bit 1 the first address, 2 the second), so a broken probe (126, 127, a signal) never
# reads as an unreachable address.
PROBE_SCRIPT = f"""\
set -u
failed=0; bit=1
while [ "$#" -ge 3 ]; do
  service=$1; host=$2; port=$3; shift 3
  if [ "$service" = PostgreSQL ]; then
    detail=$(pg_isready -h "$host" -p "$port" -t {CONNECT_TIMEOUT} 2>&1); rc=$?
    [ "$rc" -le 1 ] && ok=1 || ok=0
  else
    detail=$(timeout {CONNECT_TIMEOUT} bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>&1)
    rc=$?; [ "$rc" -eq 0 ] && ok=1 || ok=0
    [ "$rc" -eq 124 ] && detail="no answer within {CONNECT_TIMEOUT}s"
  fi
  detail=$(printf '%s' "$detail" | tr '\\n' ' ' | cut -c1-200)
  if [ "$ok" -eq 1 ]; then
    echo "reached $service $host:$port"
  else
    echo "unreachable $service $host:$port: ${{detail:-exit $rc}}"
    failed=$((failed | bit))
  fi
  bit=$((bit * 2))
done
[ "$failed" -eq 0 ] && exit 0
exit $(({UNREACHABLE_BASE} + failed))
"""


def probe_command(addresses: list[Address]) -> list[str]:
    """The probe container's command: bash running `PROBE_SCRIPT` over the addresses (each one
    an argument of its own, never pasted into the script)."""
    args = [part for a in addresses for part in (a.service, a.host, str(a.port))]
    return ["bash", "-c", PROBE_SCRIPT, "cartrita-reach-probe", *args]


def unreachable(outcome: ProbeOutcome, addresses: list[Address]) -> list[Address] | None:
    """The addresses the probe could not reach ([] for none), or None when the probe itself did
    not run to its end (no exit code, or one the probe script never gives)."""
    code = outcome.exit_code
    if not outcome.finished or code is None:
        return None
    if code == 0:
        return []
    mask = code - UNREACHABLE_BASE
    if not 0 < mask < 2 ** len(addresses):
        return None
    return [a for i, a in enumerate(addresses) if mask & (1 << i)]


def _detail(message: str, address: Address) -> str:
    for line in message.splitlines():
        if line.startswith(f"unreachable {address.service} ") and ": " in line:
            return line.split(": ", 1)[1].strip()
    return ""


def reach_problem(outcome: ProbeOutcome, addresses: list[Address]) -> str | None:
    """One message for a probe that failed (naming what and the fix), or None when v2's pods
    reached every address.

    Args:
        outcome: what the probe pod did.
        addresses: what it probed, in the order given to `probe_command`.
    """
    ns = outcome.namespace
    missed = unreachable(outcome, addresses)
    if missed == []:
        return None
    if missed is None:
        return _not_run(outcome)
    parts = []
    for a in missed:
        detail = _detail(outcome.message, a)
        parts.append(f"{a.service} at {a.where}" + (f" ({detail})" if detail else ""))
    return (
        f"A pod in v2's namespace {ns} cannot reach v1's {' and '.join(parts)}, which v2 "
        "connects to in follow mode. Fix: set "
        f"{HOST_SETTING} (FollowStore.v1_host_for_v2) to an address of v1 the cluster's pods "
        "can connect to; open v1's firewall (and Docker's published ports) to the pods' and "
        "nodes' addresses, and v1's pg_hba.conf for replication from them; check that no "
        f"NetworkPolicy in {ns} blocks egress to v1 (`kubectl -n {ns} get networkpolicy`)."
    )


def _not_run(outcome: ProbeOutcome) -> str:
    ns = outcome.namespace
    if outcome.finished:
        said = f"its container exited with code {outcome.exit_code}"
        text = " ".join(outcome.message.split())[:MESSAGE_LIMIT]
        said += f": {text}" if text else ""
        check = (
            f"that the image {outcome.image or '(v2 PostgreSQL image)'} has bash, timeout and "
            "pg_isready on its PATH"
        )
    else:
        if not outcome.phase:
            said = f"the pod was gone after {outcome.waited:.0f}s"
        elif outcome.phase in ("Pending", "Running"):
            said = f"still {outcome.phase} after {outcome.waited:.0f}s"
        else:
            said = f"the pod ended {outcome.phase} after {outcome.waited:.0f}s"
        said += f" ({outcome.reason})" if outcome.reason else ""
        check = (
            f"that a node can run pods in {ns} (`kubectl -n {ns} get pods,events`) and can pull "
            f"{outcome.image or 'v2 PostgreSQL image'}; a slow image pull needs a longer "
            f"{TIMEOUT_SETTING}"
        )
    warned = "; ".join(outcome.warnings)
    checks = "; ".join([*outcome.checks, check])
    return (
        f"Could not run a probe pod in namespace {ns} to check that v2 can reach v1: {said}"
        + (f". Warning events: {warned}" if warned else "")
        + f". Check {checks}. Whether v2 reaches v1 is unknown."
    )
