"""v2 Redis never older than v1: version parsing, the comparison, the Kubernetes image tag."""

from __future__ import annotations

import pytest

from cartrita_assets.cluster.k8s.manifests import ClusterParams, redis_image, render_cluster
from cartrita_assets.errors import PreflightError
from cartrita_assets.redis_copy import ServerVersion, check_not_older
from cartrita_assets.redis_copy.paths import payload_rdb_version

VALKEY_INFO = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "9.1.2"}


def test_valkey_is_named_by_its_own_version_not_the_compatibility_one():
    assert str(ServerVersion.from_info(VALKEY_INFO)) == "valkey 9.1.2"
    assert str(ServerVersion.from_info({"redis_version": "7.0.15"})) == "Redis 7.0.15"
    assert ServerVersion.parse("valkey 9.1.2") == ServerVersion("valkey", "9.1.2")
    assert ServerVersion.parse("7.0.15") == ServerVersion("Redis", "7.0.15")  # format-1 manifests


@pytest.mark.parametrize(
    ("v1", "v2"),
    [("Redis 7.0.15", "valkey 9.1.2"), ("Redis 7.4.0", "valkey 9.1.2"), ("Redis 7.0.15", "7.0.15")],
)
def test_same_or_newer_v2_is_accepted(v1, v2):
    check_not_older(ServerVersion.parse(v1), ServerVersion.parse(v2))


@pytest.mark.parametrize(
    ("v1", "v2", "fix"),
    [
        ("valkey 9.1.2", "Redis 7.0.15", "unset CARTRITA_V2_REDIS_SERVER"),
        ("Redis 8.2.3", "valkey 9.1.2", "Redis >= 8.2"),
        ("Redis 7.2.4", "Redis 7.0.15", "valkey >= 9"),
    ],
)
def test_older_v2_is_refused_naming_both_versions_and_the_fix(v1, v2, fix):
    with pytest.raises(PreflightError) as err:
        check_not_older(ServerVersion.parse(v1), ServerVersion.parse(v2))
    message = str(err.value)
    assert v1 in message and v2 in message and fix in message


@pytest.mark.parametrize(
    ("v1", "image"),
    [
        ("Redis 7.0.15", "redis:7.4-alpine"),
        ("Redis 8.2.3", "redis:8.2-alpine"),
        ("valkey 9.1.2", "redis:7.4-alpine"),
        ("", "redis:7.4-alpine"),
    ],
)
def test_kubernetes_redis_image_is_never_older_than_v1(v1, image):
    assert redis_image(v1) == image
    objects = render_cluster(ClusterParams(redis_image=redis_image(v1)))
    redis_set = next(
        o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "redis"
    )
    assert redis_set["spec"]["template"]["spec"]["containers"][0]["image"] == image


def test_rdb_version_is_read_from_the_payload_footer():
    payload = b"\x00\x01x" + (10).to_bytes(2, "little") + b"\x00" * 8
    assert payload_rdb_version(payload) == 10
