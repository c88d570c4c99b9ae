"""The image and the in-cluster migration Job: buildable inputs, valid objects, no credentials."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_everything_the_dockerfile_copies_exists():
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), source


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_migration_job_is_a_valid_kubernetes_object(version):
    for doc in yaml.safe_load_all((ROOT / "k8s" / "job-db-migrate.yaml").read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_migration_job_runs_the_runner_and_holds_no_credential():
    job = yaml.safe_load((ROOT / "k8s" / "job-db-migrate.yaml").read_text())
    assert job["metadata"]["namespace"] == "data-stack"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["cartrita", "db", "migrate"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["DATABASE_URL"]["valueFrom"]
    assert not any(re.search(r"://[^:/]+:[^@]+@", str(e.get("value", ""))) for e in env.values())
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
