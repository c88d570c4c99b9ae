"""v1's .env edge cases produce the right Secrets (no cluster, no server)."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

import kubernetes_validate

from cartrita_assets.envfile import V1Settings, parse_env_text
from cartrita_assets.k8s.secret_objects import build_secrets

AWKWARD = (
    "\ufeff# v1\r\n"
    "export POSTGRES_USER='app user'\r\n"
    'POSTGRES_PASSWORD="p@ss:w/rd%#\\"q"\r\n'
    "POSTGRES_DB=cartrita_db  # comment\r\n"
    "REDIS_URL=redis://:r%40dis@cache:6380/2\r\n"
    "JWT_SECRET=${POSTGRES_DB}-jwt\r\n"
    "EMPTY_KEY=\r\n"
)


def _data(obj: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


def test_awkward_env_values_survive_into_the_secrets():
    settings = V1Settings.from_env_file(parse_env_text(AWKWARD, ".env"))
    secrets = build_secrets(settings, "data-stack", settings.redis.password)
    pg, redis, app = (_data(o) for o in secrets.objects())
    assert pg["POSTGRES_USER"] == "app user"
    assert pg["POSTGRES_PASSWORD"] == 'p@ss:w/rd%#"q'
    url = urlsplit(pg["DATABASE_URL"])
    assert unquote(url.password) == 'p@ss:w/rd%#"q' and unquote(url.username) == "app user"
    assert url.hostname == "postgres.data-stack.svc.cluster.local" and url.path == "/cartrita_db"
    assert redis["REDIS_PASSWORD"] == "r@dis" and redis["REDIS_URL"].endswith(":6379/2")
    assert app == {"JWT_SECRET": "cartrita_db-jwt", "EMPTY_KEY": ""}
    for obj in secrets.objects():
        assert obj["immutable"] is True
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_names_follow_content_and_fingerprints_hide_values():
    settings = V1Settings.from_env_file(parse_env_text(AWKWARD, ".env"))
    first = build_secrets(settings, "data-stack", "one")
    again = build_secrets(settings, "data-stack", "one")
    changed = build_secrets(settings, "data-stack", "two")
    assert first.names() == again.names()
    assert first.names()["redis"] != changed.names()["redis"]
    assert first.names()["postgres"] == changed.names()["postgres"]
    shown = str(first.fingerprints())
    assert "p@ss" not in shown and "r@dis" not in shown and "sha256:" in shown
