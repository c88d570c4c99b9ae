"""`dagster dev` serves the graph from workspace.yaml: every asset, check and job loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cartrita_assets.local.system import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
    __typename ... on PythonError { message } } } } }
  assetNodes { assetKey { path } description groupName
               assetChecksOrError { ... on AssetChecks { checks { name description } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }
"""


def _graphql(port: int) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def _wait_for(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("dagster dev did not answer /server_info in time")


def test_dagster_dev_loads_the_whole_graph(test_dir):
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(test_dir / "home"),
           "CARTRITA_STATE_DIR": str(test_dir / "state")}  # fmt: skip
    (test_dir / "home").mkdir()
    (test_dir / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
        cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(port, time.monotonic() + 120)
        data = _graphql(port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    entries = data["workspaceOrError"]["locationEntries"]
    assert [e["locationOrLoadError"]["__typename"] for e in entries] == ["RepositoryLocation"]
    assets = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert {"v1_backup", "k8s_secrets", "pgvector_cluster", "restored_db", "schema_version"} <= set(
        assets
    )
    assert all(n["description"] for n in assets.values())
    checks = {c["name"] for n in assets.values() for c in n["assetChecksOrError"]["checks"]}
    assert {"content_hashes_match_v1", "guide_objects_exist", "backup_is_restorable"} <= checks
    jobs = {j["name"] for r in data["repositoriesOrError"]["nodes"] for j in r["jobs"]}
    assert "forward_migration_job" in jobs
