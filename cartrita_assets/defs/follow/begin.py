"""v1_backup in follow mode: the slot first, then the backup inside the slot's snapshot."""

from pathlib import Path

import dagster as dg

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.backup.snapshot import take_backup
from cartrita_assets.backup.store import BackupStore
from cartrita_assets.cluster.k8s.probe import ProbeOutcome
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import progress
from cartrita_assets.envfile import V1Settings
from cartrita_assets.follow import ledger as ledgers
from cartrita_assets.follow import steps
from cartrita_assets.follow.reach import Address, probe_command
from cartrita_assets.resources.follow import FollowStore


class BackupConfig(dg.Config):
    """Run-time knobs of v1_backup."""

    follow: bool = False
    """Follow mode: v2 keeps following v1 (logical replication, Redis REPLICAOF) from this
    backup's snapshot until ``cutover_job``; the application keeps running meanwhile."""
    replica_identity_full: bool = False
    """Consent to set REPLICA IDENTITY FULL on v1 tables without a primary key (follow mode;
    removed again by the cutover or ``cartrita follow abort``). Implied for the embedded demo
    v1, which this project creates itself; a v1 from an environment file needs it given."""


def full_identity_consent(config: BackupConfig, source: dict[str, str]) -> tuple[bool, str]:
    """Whether follow mode may set REPLICA IDENTITY FULL on keyless tables, and why (pure)."""
    if config.replica_identity_full:
        return True, "given (replica_identity_full / --replica-identity-full)"
    if source.get("kind") == "demo":
        return True, "implied: the embedded demo v1 is this project's own database"
    return False, "not given"


def reach_probe(v2: V2Target, follow: FollowStore, log: steps.Log) -> steps.Probe | None:
    """How preflight checks that v2 can reach v1: in the kubernetes topology, a probe pod in
    v2's namespace (bounded by ``follow.reach_probe_timeout``); locally, nothing to probe."""
    if follow.topology != "kubernetes":
        return None

    def probe(addresses: list[Address], v1_major: int) -> ProbeOutcome | None:
        return v2.probe_reach(probe_command(addresses), v1_major, follow.reach_probe_timeout, log)

    return probe


def backup_in_follow_mode(
    context: dg.AssetExecutionContext,
    config: BackupConfig,
    settings: V1Settings,
    source: dict[str, str],
    backups: BackupStore,
    follow: FollowStore,
    v2: V2Target,
) -> tuple[Path, Manifest, dict[str, object]]:
    """Preflight, publication, slot; the backup reads the slot's exported snapshot while the
    replication connection that exported it stays open. Returns the folder, the manifest and
    the follow-mode metadata (what was created on v1)."""
    log = progress(context)
    consent, why = full_identity_consent(config, source)
    with steps.begin(
        settings,
        follow.path(),
        full_identity_consent=consent,
        topology=follow.topology,
        log=log,
        v2_admin=v2.admin,
        v2_redis=lambda: v2.redis() if settings.redis else None,
        v1_host_for_v2=follow.v1_host_for_v2,
        probe=reach_probe(v2, follow, log),
    ) as (slot, ledger):
        folder, manifest = take_backup(
            settings, backups.path(), source=source, log=log,
            min_free_ratio=backups.min_free_ratio, jobs=backups.dump_jobs,
            snapshot=slot.snapshot,
        )  # fmt: skip
        ledger.backup_id = manifest.backup_id
    ledgers.save(follow.path(), ledger)
    return (
        folder,
        manifest,
        {
            "follow": True,
            "follow_slot": slot.name,
            "follow_start_lsn": slot.consistent_lsn,
            "follow_v1_objects": "; ".join(ledger.v1_objects()),
            "follow_full_identity_consent": why,
        },
    )
