"""The cutover files' naming rule: ``.env.v1`` and ``.env.v2`` beside the application's ``.env``.

``.env.v1`` is an exact copy of v1's ``.env`` saved before the cutover; ``.env.v2`` is the same
file pointing at v2. Once ``.env.v1`` exists it is v1's record: after ``cp .env.v2 .env`` the
``.env`` describes v2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal


def cutover_file(env_file: Path, version: Literal["v1", "v2"]) -> Path:
    """``<env_file>.v1`` or ``<env_file>.v2``, beside ``env_file``."""
    return env_file.with_name(f"{env_file.name}.{version}")


def v1_settings_file(env_file: Path) -> Path:
    """Where v1's settings are read: ``.env.v1`` once it was saved, else ``env_file`` itself."""
    saved = cutover_file(env_file, "v1")
    return saved if saved.exists() else env_file
