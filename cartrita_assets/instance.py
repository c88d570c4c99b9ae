"""The local Dagster instance: its own DAGSTER_HOME inside the state folder."""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_YAML = """\
# Written by cartrita-assets for the local environment. For a shared instance, replace the
# storage section with dagster-postgres (see README, "A shared Dagster instance").
telemetry:
  enabled: false
nux:
  enabled: false
"""


def ensure_dagster_home(state: Path) -> Path:
    """Use ``$DAGSTER_HOME`` if set, else create ``<state>/dagster_home`` (``state``: the state
    folder, ``environments.state_dir()``) and point to it."""
    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured) if configured else state / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home
