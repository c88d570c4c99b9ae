"""v1's .env edge cases produce the right Secrets (no cluster, no server)."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

import kubernetes_validate

from cartrita_assets.cluster.k8s.secret_objects import build_secrets, same_secret
from cartrita_assets.envfile import V1Settings, parse_env_text

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


def test_an_env_without_application_keys_gives_an_app_secret_without_data():
    only_servers = "POSTGRES_USER=u\nPOSTGRES_PASSWORD=p\nPOSTGRES_DB=d\nREDIS_HOST=r\n"
    settings = V1Settings.from_env_file(parse_env_text(only_servers, ".env"))
    app = build_secrets(settings, "data-stack", "r").app
    assert "data" not in app  # the server stores `data: {}` as no data at all
    kubernetes_validate.validate(app, "1.30.0", strict=True)
    stored = {**app, "metadata": {**app["metadata"], "uid": "x"}}
    assert same_secret(stored, app)
    assert same_secret({**stored, "data": {}}, app)
    assert not same_secret({**stored, "data": {"K": "dg=="}}, app)
    assert not same_secret(None, app)


def test_in_cluster_addresses_name_the_namespace():
    settings = V1Settings.from_env_file(parse_env_text(AWKWARD, ".env"))
    secrets = build_secrets(settings, "cartrita-alt", "one")
    assert {o["metadata"]["namespace"] for o in secrets.objects()} == {"cartrita-alt"}
    urls = [_data(secrets.postgres)["DATABASE_URL"], _data(secrets.redis)["REDIS_URL"]]
    hosts = [urlsplit(url).hostname for url in urls]
    assert hosts == [
        "postgres.cartrita-alt.svc.cluster.local",
        "redis.cartrita-alt.svc.cluster.local",
    ]
