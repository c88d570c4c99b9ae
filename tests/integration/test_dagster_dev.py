"""`cartrita dev` and `dg dev` serve the whole graph: every asset, check and job loads."""

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
from support.ports import free_port

from cartrita_assets.definitions import build_definitions
from cartrita_assets.environments import build_resources

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError {
    __typename ... on PythonError { message } } } } }
  assetNodes { assetKey { path } description groupName kinds
               owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
               assetChecksOrError { ... on AssetChecks { checks { name description } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes {
      jobs { name description } sensors { name description } schedules { name cronSchedule } } } } }
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


def _command(tool: str, port: int) -> list[str]:
    """`cartrita dev` (its arguments go through to `dagster dev`) or Dagster's own `dg dev`."""
    bin_dir = Path(sys.executable).parent
    if tool == "cartrita":
        return [str(bin_dir / "cartrita"), "dev", "-p", str(port)]
    return [str(bin_dir / "dg"), "dev", "-p", str(port)]


@pytest.mark.parametrize("tool", ["cartrita", "dg"])
def test_dagster_dev_loads_the_whole_graph(test_dir, tool):
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(test_dir / "home"),
           "CARTRITA_STATE_DIR": str(test_dir / "state"),
           "VIRTUAL_ENV": str(Path(sys.executable).parents[1])}  # fmt: skip
    (test_dir / "home").mkdir()
    (test_dir / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.Popen(
        _command(tool, port),
        cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        _wait_for(port, deadline)
        data = _graphql(port)
        # the server answers before the code location has loaded (slow on a cold virtualenv)
        while any(
            e["loadStatus"] == "LOADING" for e in data["workspaceOrError"]["locationEntries"]
        ):
            assert time.monotonic() < deadline, "the code location did not load in time"
            time.sleep(1)
            data = _graphql(port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a slow shutdown is not what this test is about
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    entries = data["workspaceOrError"]["locationEntries"]
    assert [e["locationOrLoadError"]["__typename"] for e in entries] == ["RepositoryLocation"]
    defs = build_definitions(build_resources("local", test_dir / "state"))
    assets = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    expected_assets = {k.to_user_string() for a in defs.assets or [] for k in a.keys}
    assert set(assets) == expected_assets and "integration_report" in assets
    for name, node in assets.items():  # what the UI shows for each asset
        assert node["description"] and node["groupName"] != "default", name
        assert node["kinds"] and node["owners"], name
    checks = {c["name"]: c for n in assets.values() for c in n["assetChecksOrError"]["checks"]}
    expected_checks = {key.name for c in defs.asset_checks or [] for key in c.check_keys} | {
        key.name for a in defs.assets or [] for key in getattr(a, "check_keys", ())
    }  # checks declared on their asset (v2_cutover's) as well as on their own
    assert set(checks) == expected_checks and len(checks) >= 20
    assert all(c["description"] for c in checks.values())
    (repo,) = data["repositoriesOrError"]["nodes"]
    jobs = {j["name"]: j for j in repo["jobs"] if j["name"] != "__ASSET_JOB"}
    assert set(jobs) == {job.name for job in defs.jobs or []}
    assert {"forward_migration_job", "rollback_job", "cutover_job", "v2_backup_job"} <= set(jobs)
    assert all(j["description"] for j in jobs.values())
    sensors = {x["name"]: x for x in repo["sensors"]}
    assert set(sensors) == {
        "stale_embeddings_sensor", "index_volume_sensor", "replication_lag_sensor",
        "check_failure_alert_sensor", "run_failure_alert_sensor",
    }  # fmt: skip
    assert all(x["description"] for x in sensors.values())
    schedules = {x["name"]: x["cronSchedule"] for x in repo["schedules"]}
    assert schedules == {
        "v2_health_checks_schedule": "0 * * * *",
        "v2_backup_schedule": "0 3 * * *",
    }
