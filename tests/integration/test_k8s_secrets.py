"""k8s_secrets in the local environment: the right Secrets, working env copies, nothing leaked."""

from __future__ import annotations

import base64
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from support.demo import v1_source
from support.runs import check_results, event_log_text, failure_messages, run_job

from cartrita_assets.envfile import V1Settings, read_env_file
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for

pytestmark = pytest.mark.integration


def _own_env(demo_v1, test_dir: Path, extra: str = "") -> Path:
    """A user's v1 .env (a copy of the demo's, so it reaches real servers), plus ``extra``."""
    env_file = test_dir / "app" / ".env"
    env_file.parent.mkdir()
    env_file.write_text(demo_v1.env_file.read_text() + extra)
    return env_file


def _secret_values(settings: V1Settings) -> list[str]:
    return [v for v in settings.secret_values() if len(v) >= 8]


def test_secrets_and_env_copies_work_and_leak_nothing(resources, instance, demo_v1, test_dir):
    env_file = _own_env(demo_v1, test_dir, 'export STRIPE_KEY="sk_live_abcdefgh12345678"\r\n')
    resources = {**resources, "v1": v1_source(demo_v1, env_file)}
    result = run_job(resources, instance)
    assert result.success, failure_messages(result)
    assert check_results(result)["env_copies_are_exact_and_private"] is True

    settings = V1Settings.from_env_file(read_env_file(env_file))
    rendered = Path(resources["v2"].rendered_dir())
    secrets = list(yaml.safe_load_all((rendered / "secrets.yaml").read_text()))
    by_base = {s["metadata"]["name"].rsplit("-", 1)[0]: s for s in secrets}
    assert set(by_base) == {"cartrita-postgres", "cartrita-redis", "cartrita-app"}
    assert all(s["immutable"] is True for s in secrets)

    def data(base: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in by_base[base]["data"].items()}

    assert data("cartrita-postgres")["POSTGRES_PASSWORD"] == settings.postgres.password
    assert data("cartrita-redis")["REDIS_PASSWORD"] == settings.redis.password
    assert data("cartrita-app")["STRIPE_KEY"] == "sk_live_abcdefgh12345678"
    assert "POSTGRES_PASSWORD" not in data("cartrita-app")
    assert stat.S_IMODE((rendered / "secrets.yaml").stat().st_mode) == 0o600

    # .env.v1 is the exact original; .env.v2 reaches v2 with v1's credentials
    assert (env_file.parent / ".env.v1").read_bytes() == env_file.read_bytes()
    v2_settings = V1Settings.from_env_file(read_env_file(env_file.parent / ".env.v2"))
    assert v2_settings.postgres.port == resources["v2"].pg_port
    with connect(replace(v2_settings.postgres), role="v2 via .env.v2") as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0
    assert client_for(v2_settings.redis).ping()
    assert v2_settings.other_keys["STRIPE_KEY"] == "sk_live_abcdefgh12345678"

    # no secret value outside the Secret objects and the 0600 env files
    log = event_log_text(instance, result.run_id)
    manifests = (rendered / "pgvector-redis.yaml").read_text()
    for value in _secret_values(settings) + ["sk_live_abcdefgh12345678"]:
        assert value not in log
        assert value not in manifests


def test_missing_required_key_is_named(resources, instance, demo_v1, test_dir):
    env_file = _own_env(demo_v1, test_dir)
    lines = [ln for ln in env_file.read_text().splitlines()
             if not ln.startswith(("POSTGRES_PASSWORD", "DATABASE_URL"))]  # fmt: skip
    env_file.write_text("\n".join(lines) + "\n")
    resources = {**resources, "v1": v1_source(demo_v1, env_file)}
    result = run_job(resources, instance)
    assert not result.success
    assert "POSTGRES_PASSWORD" in " ".join(failure_messages(result))
    assert not (env_file.parent / ".env.v1").exists()


def test_env_v1_is_never_overwritten_with_a_different_file(resources, instance, demo_v1, test_dir):
    env_file = _own_env(demo_v1, test_dir)
    resources = {**resources, "v1": v1_source(demo_v1, env_file)}
    assert run_job(resources, instance).success
    original = (env_file.parent / ".env.v1").read_bytes()
    env_file.write_bytes((env_file.parent / ".env.v2").read_bytes())  # the user cut over
    result = run_job(resources, instance)
    assert not result.success
    assert ".env.v1 exists and differs" in " ".join(failure_messages(result))
    assert (env_file.parent / ".env.v1").read_bytes() == original
