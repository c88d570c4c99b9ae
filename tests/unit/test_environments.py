"""environments.py is the one place settings are read: the namespace reaches both targets, and the
CLI finds v1's .env where the v1 resource does, without importing Dagster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cartrita_assets.environments import build_resources, namespace_from_env, v1_env_file
from cartrita_assets.errors import CartritaError, EnvFileError


@pytest.mark.parametrize("env", ["local", "kubernetes"])
def test_cartrita_namespace_reaches_the_v2_target(env, monkeypatch, tmp_path):
    monkeypatch.setenv("CARTRITA_NAMESPACE", "cartrita-alt")
    assert build_resources(env, tmp_path)["v2"].namespace == "cartrita-alt"
    monkeypatch.delenv("CARTRITA_NAMESPACE")
    assert build_resources(env, tmp_path)["v2"].namespace == "data-stack"


@pytest.mark.parametrize("bad", ["Data_Stack", "-x", "a" * 64, "ns.with.dots"])
def test_a_namespace_kubernetes_would_refuse_is_refused_by_name(bad, monkeypatch):
    monkeypatch.setenv("CARTRITA_NAMESPACE", bad)
    with pytest.raises(CartritaError, match="CARTRITA_NAMESPACE=.* is not a Kubernetes namespace"):
        namespace_from_env()


@pytest.mark.parametrize("env", ["local", "kubernetes"])
@pytest.mark.parametrize("case", ["named", "named_missing", "default", "none"])
def test_the_cli_finds_v1s_env_file_where_the_v1_resource_does(env, case, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CARTRITA_V1_ENV_FILE", raising=False)
    if case in ("named", "named_missing"):
        named = tmp_path / "elsewhere" / "v1.env"
        if case == "named":
            named.parent.mkdir()
            named.write_text("POSTGRES_USER=app\n")
        monkeypatch.setenv("CARTRITA_V1_ENV_FILE", str(named))
    elif case == "default":
        (tmp_path / ".env").write_text("POSTGRES_USER=app\n")

    def outcome(find):
        try:
            return find()
        except EnvFileError as exc:
            return f"error: {exc}"

    resource = build_resources(env, tmp_path / "state")["v1"]
    found = outcome(lambda: v1_env_file(env))
    assert found == outcome(resource.resolved_env_file)
    expected = {
        "named": tmp_path / "elsewhere" / "v1.env",
        "default": Path(".env"),
        "none": None if env == "local" else "error",
        "named_missing": "error",
    }[case]
    assert str(found).startswith("error: ") if expected == "error" else found == expected


def test_a_bad_env_file_fails_before_dagster_is_imported(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"POSTGRES_USER=a\nPOSTGRES_USER=b\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTRITA_")}
    env.update(CARTRITA_STATE_DIR=str(tmp_path / "state"), CARTRITA_V1_ENV_FILE=str(env_file))
    probe = (
        "import sys\n"
        "from cartrita_assets.cli.main import main\n"
        "code = main(['forward'])\n"
        "print('exit', code, 'dagster imported:', 'dagster' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.stdout.strip() == "exit 2 dagster imported: False", (run.stdout, run.stderr)
    assert f"{env_file}: line 2: duplicate key POSTGRES_USER" in run.stderr
    assert not (tmp_path / "state").exists()
