"""Retention's decision, without servers: by count and age, never before a newer verified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cartrita_assets.backup.retention import BackupEntry, over_policy, plan_retention
from cartrita_assets.environments import v2_backup_cron, v2_backup_store
from cartrita_assets.errors import CartritaError

NOW = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)


def _entries(*states: bool | None, days_apart: int = 1) -> list[BackupEntry]:
    """Backups newest first, one a day, with the given verification states."""
    return [
        BackupEntry(f"v2_{i}", NOW - timedelta(days=i * days_apart), state)
        for i, state in enumerate(states)
    ]


def test_nothing_goes_while_no_backup_is_verified():
    plan = plan_retention(_entries(None, False, None, None), keep=1, max_age_days=1, now=NOW)
    assert plan.remove == [] and "no backup has been verified" in plan.reason


def test_beyond_the_count_go_once_a_newer_one_is_verified():
    plan = plan_retention(_entries(True, True, True, True), keep=2, max_age_days=0, now=NOW)
    assert plan.remove == ["v2_2", "v2_3"] and plan.keep == ["v2_0", "v2_1"]


def test_the_newest_verified_stays_even_when_an_unverified_newer_one_exists():
    # the newest failed its test: the verified one behind it is kept although keep=1
    plan = plan_retention(_entries(False, True, True), keep=1, max_age_days=0, now=NOW)
    assert plan.remove == ["v2_2"] and "v2_1" in plan.keep and "v2_0" in plan.keep


def test_age_limit_removes_old_ones_within_the_count():
    entries = _entries(True, None, None, days_apart=10)
    plan = plan_retention(entries, keep=5, max_age_days=15, now=NOW)
    assert plan.remove == ["v2_2"]  # 20 days old; v2_1 is 10 days old


def test_an_old_newest_verified_backup_is_never_removed_by_age():
    plan = plan_retention(_entries(None, True, days_apart=100), keep=1, max_age_days=30, now=NOW)
    assert plan.remove == []


def test_over_policy_names_each_backup_and_why():
    entries = _entries(True, True, True, days_apart=40)
    assert over_policy(entries, keep=2, max_age_days=30, now=NOW) == [
        "v2_2: beyond the 2 newest", "v2_1: older than 30 days"
    ]  # fmt: skip
    assert over_policy(entries[:1], keep=2, max_age_days=30, now=NOW) == []


def test_settings_are_read_and_refused_by_name(monkeypatch, tmp_path):
    monkeypatch.setenv("CARTRITA_V2_BACKUP_KEEP", "3")
    monkeypatch.setenv("CARTRITA_V2_BACKUP_MAX_AGE_DAYS", "0")
    monkeypatch.setenv("CARTRITA_V2_BACKUP_DIR", str(tmp_path / "b"))
    store = v2_backup_store(tmp_path)
    assert (store.keep, store.max_age_days, store.root) == (3, 0, str(tmp_path / "b"))
    monkeypatch.setenv("CARTRITA_V2_BACKUP_KEEP", "0")
    with pytest.raises(CartritaError, match="CARTRITA_V2_BACKUP_KEEP must be a whole number >= 1"):
        v2_backup_store(tmp_path)
    monkeypatch.setenv("CARTRITA_V2_BACKUP_CRON", "daily")
    with pytest.raises(CartritaError, match="CARTRITA_V2_BACKUP_CRON='daily' is not a valid cron"):
        v2_backup_cron()


def test_the_run_pod_mounts_the_backup_claim_as_dagster_k8s_reads_it(monkeypatch):
    import json

    import kubernetes
    from dagster_k8s.job import get_user_defined_k8s_config
    from dagster_k8s.models import k8s_model_from_dict

    from cartrita_assets.environments import v2_backup_run_tags

    monkeypatch.delenv("CARTRITA_V2_BACKUP_PVC", raising=False)
    assert v2_backup_run_tags() == {}
    monkeypatch.setenv("CARTRITA_V2_BACKUP_PVC", "cartrita-v2-backups")
    monkeypatch.setenv("CARTRITA_V2_BACKUP_DIR", "relative/dir")
    with pytest.raises(CartritaError, match="absolute path the claim is mounted at"):
        v2_backup_run_tags()
    monkeypatch.setenv("CARTRITA_V2_BACKUP_DIR", "/var/lib/cartrita/v2-backups")
    tags = v2_backup_run_tags()
    config = get_user_defined_k8s_config(tags)  # what the K8sRunLauncher reads from the run
    (mount,) = config.container_config["volume_mounts"]
    (volume,) = config.pod_spec_config["volumes"]
    mount = k8s_model_from_dict(kubernetes.client.V1VolumeMount, mount)
    volume = k8s_model_from_dict(kubernetes.client.V1Volume, volume)
    assert mount.mount_path == "/var/lib/cartrita/v2-backups" and mount.name == volume.name
    assert volume.persistent_volume_claim.claim_name == "cartrita-v2-backups"
    assert json.loads(tags["dagster-k8s/config"])  # a plain JSON tag
    monkeypatch.setenv("CARTRITA_V2_BACKUP_PVC", "Bad_Name")
    with pytest.raises(CartritaError, match="CARTRITA_V2_BACKUP_PVC='Bad_Name' is not a"):
        v2_backup_run_tags()
