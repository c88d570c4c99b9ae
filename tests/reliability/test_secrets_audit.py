"""Secrets audit of a full forward run and then a rollback run (that restores v1).

Every secret (v1 PostgreSQL and Redis passwords, v2 superuser password, the app role's password,
every secret-looking value of the demo v1 .env, the demo servers' own superuser password) is
searched raw, URL-encoded and base64-encoded in: the Dagster event log and storage of both runs,
stdout/stderr of both runs, every file under the state, backups and reports folders (except the
credential files that hold them by design, which must be 0600), the rendered non-Secret Kubernetes
objects, and the command line of every process that ran meanwhile.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import pytest
import yaml
from support.demo import v1_source
from support.proc_audit import ProcessAudit
from support.runs import check_results, event_log_text, failure_messages, run_job

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.cli.summary import RunSummary
from cartrita_assets.envfile import read_env_file
from cartrita_assets.pg.connect import connect
from cartrita_assets.rollback.steps import backup_reference, compare_v1

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

CONFIRM = {"ops": {"v1_reinstated": {"config": {"confirm_overwrite_v1": True}}}}

# What the demo's .env writer (DemoV1._write_env_file) puts there that is secret.
ENV_SECRET_KEYS = ("POSTGRES_PASSWORD", "DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "JWT_SECRET")
_SECRET_LOOKING_KEY = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|DSN|_URL$")

# Files that hold credentials by design (relative to the test's folder, which plays the state
# folder: v1 = the demo v1's folder, v2 = the local v2's). Each must exist and be 0600.
CREDENTIAL_FILES = (
    "v1/.env",  # the demo's generated v1 .env (DemoV1._write_env_file)
    "v1/.env.v1",  # k8s_secrets: exact copy of v1's .env (envswitch.write_env_files)
    "v1/.env.v2",  # k8s_secrets: the same pointing at v2
    "v1/postgres/superuser.password",  # LocalPostgres._initdb
    "v1/redis/requirepass.password",  # LocalRedis.ensure_running
    "v1/redis/redis.conf",  # LocalRedis._start: requirepass
    "v2/postgres/superuser.password",
    "v2/redis/requirepass.password",
    "v2/redis/redis.conf",
    "v2/rendered/secrets.yaml",  # LocalV2Target.publish_secrets: the rendered Secrets
)
# Also by design, outside these folders: the pg_dump/pg_restore passfile (pg/tools.passfile_env),
# a 0600 file in a 0700 temporary folder removed when the tool exits (checked while it runs).


def _forms(name: str, secret: str) -> dict[bytes, str]:
    """The secret raw, URL-encoded (upper/lower hex, and +-for-space) and base64-encoded (standard
    and URL-safe, at each of the three byte alignments it can have inside a longer value)."""
    raw = secret.encode()
    encoded = quote(secret, safe="")
    pairs = [
        (raw, "raw"),
        (encoded.encode(), "url-encoded"),
        (re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), encoded).encode(), "url-encoded"),
        (quote_plus(secret, safe="").encode(), "url-encoded"),
        (base64.b64encode(raw), "base64"),
    ]
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw)
        stable = enc[4 if k else 0 : (k + len(raw)) // 3 * 4]  # chars only the secret decides
        pairs += [(stable, "base64"), (stable.translate(bytes.maketrans(b"+/", b"-_")), "base64")]
    forms: dict[bytes, str] = {}
    for form, kind in pairs:
        if len(form) >= 12:
            forms.setdefault(form, f"{name} ({kind})")  # the first name wins: raw before encoded
    return forms


def _all_forms(secrets: dict[str, str]) -> dict[bytes, set[str]]:
    """Every form of every secret -> the labels it stands for (secrets may share a value)."""
    out: dict[bytes, set[str]] = {}
    for name, value in secrets.items():
        for form, label in _forms(name, value).items():
            out.setdefault(form, set()).add(label)
    return out


def _leaks(blob: bytes | str, forms: dict[bytes, set[str]]) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return sorted({label for form, labels in forms.items() if form in data for label in labels})


def _collect_secrets(resources, own_v1) -> dict[str, str]:
    """name -> value of every secret of the migration (v2 must be up)."""
    settings = resources["v1"].settings()
    env = read_env_file(own_v1.env_file).values
    assert set(ENV_SECRET_KEYS) <= set(env), "the demo .env writer changed: update the audit"
    secrets = {
        "v1 PostgreSQL password": settings.postgres.password,
        "v1 Redis password": settings.redis.password,
        "v2 superuser password": resources["v2"].admin().password,
        "app role password (v2)": settings.postgres.password,
        "v2 Redis password": resources["v2"].redis().password,
        "demo v1 superuser password": own_v1.servers()[0].settings().password,
    }
    for key, value in env.items():
        if _SECRET_LOOKING_KEY.search(key) and ("://" not in value or urlsplit(value).password):
            secrets[f".env {key}"] = value
    # the app role in v2 really has that password
    app = settings.postgres
    v2_app = replace(resources["v2"].admin("cartrita"), user=app.user, password=app.password)
    with connect(v2_app, role="test") as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == app.user
    for name, value in secrets.items():
        assert value and len(value) >= 16, f"{name} is too short to search for reliably"
    return secrets


def _files(root: Path) -> list[Path]:
    out = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                if stat.S_ISREG(path.lstat().st_mode):
                    out.append(path)
            except OSError:
                continue
    return out


def test_no_secret_leaks_from_a_forward_and_a_rollback_run(
    resources, own_v1, disk_instance, test_dir, capfd
):
    instance = disk_instance  # its storage files are read below
    resources = {**resources, "v1": v1_source(own_v1)}
    reports = test_dir / "cli-reports"  # what `cartrita forward/rollback` writes and prints

    def run(job: str, **kwargs):
        with ProcessAudit(marker=str(test_dir)) as audit:
            result = run_job(resources, instance, job=job, **kwargs)
            summary = RunSummary.from_result(result)
            summary.write(reports)
            print(summary.markdown())
        return result, audit

    forward, forward_audit = run("forward_migration_job")
    assert forward.success, failure_messages(forward)
    checks = check_results(forward)
    assert checks and all(checks.values()), checks  # v2 equals v1
    secrets = _collect_secrets(resources, own_v1)
    with connect(resources["v1"].settings().postgres, role="test") as conn:  # v1 changes...
        conn.execute("UPDATE public.users SET name = 'changed after the backup' WHERE id = 2")
    rollback, rollback_audit = run("rollback_job", run_config=CONFIRM)  # ...so it restores v1
    assert rollback.success, failure_messages(rollback)
    assert check_results(rollback) == {"v1_matches_backup": True}
    output = capfd.readouterr()

    forms = _all_forms(secrets)

    # (i) the Dagster event log of both runs (every record, metadata included), and its storage
    for result in (forward, rollback):
        assert not _leaks(event_log_text(instance, result.run_id), forms), result.run_id
    for path in _files(Path(instance.root_directory)):
        assert not _leaks(path.read_bytes(), forms), path

    # (ii) what both runs printed
    assert "pg_dump" in output.err and "pg_restore" in output.err  # the capture saw the runs
    assert not _leaks(output.out, forms) and not _leaks(output.err, forms)

    # (iii) every file under the state, backups and reports folders
    backups = Path(resources["backups"].root)
    assert any(backups.glob("*/manifest.json")) and any(reports.rglob("summary.json"))
    credential_files = {test_dir / rel for rel in CREDENTIAL_FILES}
    for path in sorted(credential_files):
        assert path.exists(), f"{path} missing: update CREDENTIAL_FILES"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is not 0600"
    # the search finds what is there: raw in the .env, base64 in the rendered Secrets
    assert "v1 PostgreSQL password (raw)" in _leaks((test_dir / "v1/.env").read_bytes(), forms)
    in_secrets = _leaks((test_dir / "v2/rendered/secrets.yaml").read_bytes(), forms)
    assert "v1 PostgreSQL password (base64)" in in_secrets, in_secrets
    assert ".env OPENAI_API_KEY (base64)" in in_secrets, in_secrets
    checked = 0
    for path in _files(test_dir):
        try:
            data = path.read_bytes()
        except OSError:  # a server's temporary file that went away
            continue
        checked += 1
        leaks = _leaks(data, forms)
        if leaks:
            assert path in credential_files, f"{path} holds {leaks}"
            assert not stat.S_IMODE(path.stat().st_mode) & 0o077, f"{path} readable by others"
    assert checked > 100

    # (iv) the rendered non-Secret Kubernetes objects
    rendered_dir = test_dir / "v2" / "rendered"
    rendered = [p for p in rendered_dir.glob("*.yaml") if p.name != "secrets.yaml"]
    assert rendered, "no rendered cluster objects"
    for path in rendered:
        kinds = [doc["kind"] for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert kinds and "Secret" not in kinds, (path, kinds)
        assert not _leaks(path.read_bytes(), forms), path

    # (v) the argument list (and, for the database tools, the environment) of every process
    assert forward_audit.tool_lines("pg_dump"), "the audit never saw pg_dump"
    assert forward_audit.tool_lines("pg_restore"), "the audit never saw the forward pg_restore"
    assert rollback_audit.tool_lines("pg_restore"), "the audit never saw the rollback pg_restore"
    for audit in (forward_audit, rollback_audit):
        for line in audit.seen:
            assert not _leaks(line, forms), line
        for pid, environ in audit.tool_environ.items():
            assert not _leaks(environ, forms), f"environment of pid {pid}"
            assert b"PGPASSWORD=" not in environ
        assert audit.passfiles, "no passfile seen while a tool ran"
        for path, (mode, folder_mode) in audit.passfiles.items():
            assert (mode, folder_mode) == (0o600, 0o700), (path, oct(mode), oct(folder_mode))
            assert not Path(path).exists(), f"{path} left behind"

    # nothing lost: the forward run was all green (v2 equal to v1) and, after the rollback
    # restored it, v1 equals its backup again
    latest = max(backups.glob("*/manifest.json")).parent
    assert not compare_v1(
        resources["v1"].settings(), backup_reference(latest, Manifest.load(latest))
    ).any()
