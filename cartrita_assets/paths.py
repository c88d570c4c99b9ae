"""Where the project keeps what it writes at run time, and where it finds sql/ and k8s/."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """The state folder: ``$CARTRITA_STATE_DIR`` or ``.cartrita/`` in the current directory."""
    configured = os.environ.get("CARTRITA_STATE_DIR")
    return Path(configured).expanduser().resolve() if configured else Path.cwd() / ".cartrita"


def dagster_home() -> Path:
    """The local Dagster instance directory inside the state folder."""
    return state_dir() / "dagster_home"


def data_path(kind: str) -> Path:
    """Locate the top-level ``sql`` or ``k8s`` folder, in a checkout or an installed wheel.

    Args:
        kind: ``"sql"`` or ``"k8s"``.

    Returns:
        The folder; the wheel carries them as ``cartrita_assets/_data/<kind>``.
    """
    packaged = Path(__file__).resolve().parent / "_data" / kind
    if packaged.is_dir():
        return packaged
    return PROJECT_ROOT / kind
