"""Where the project finds its own files: the checkout, and the sql/ and k8s/ folders. (The state
folder, a setting, is ``environments.state_dir``.)"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
