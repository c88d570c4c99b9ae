"""Where the suite's scratch folders live (pytest's ``tmp_path``, the servers' data folders, the
control plane's): a RAM-backed tmpfs (``/dev/shm``) when it has room, else the system's temporary
folder. Deleting thousands of server files on a disk (ext4 mounted with ``discard``) cost the
suite 16-21 s of teardown; on tmpfs it costs almost nothing, and the servers' writes never wait on
the disk. ``CARTRITA_TEST_TMPDIR`` names another folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

TMPDIR_ENV = "CARTRITA_TEST_TMPDIR"
SHM = Path("/dev/shm")
MIN_FREE = 4 << 30  # the suite writes well under 1 GiB; leave the machine its RAM


def scratch_root(
    environ: Mapping[str, str] = os.environ, shm: Path = SHM, min_free: int = MIN_FREE
) -> Path | None:
    """``$CARTRITA_TEST_TMPDIR``; else ``shm`` when it is writable with ``min_free`` bytes free;
    else None (the system's temporary folder).

    Raises:
        pytest.UsageError: ``CARTRITA_TEST_TMPDIR`` names no writable folder.
    """
    named = environ.get(TMPDIR_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            raise pytest.UsageError(
                f"{TMPDIR_ENV}={named!r} is not a writable folder: create it, or unset "
                f"{TMPDIR_ENV} to use /dev/shm (or the system's temporary folder)."
            )
        return path.resolve()
    try:
        stat = os.statvfs(shm)
    except OSError:
        return None
    if stat.f_bavail * stat.f_frsize < min_free or not os.access(shm, os.W_OK | os.X_OK):
        return None
    return shm


def use_scratch_root(root: Path) -> None:
    """Make ``root`` this process's temporary folder and its children's (``TMPDIR``), and pin it
    for pytest-xdist's workers, which inherit the environment (so they never decide otherwise)."""
    tempfile.tempdir = str(root)
    os.environ["TMPDIR"] = str(root)
    os.environ[TMPDIR_ENV] = str(root)
