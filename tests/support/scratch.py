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


RUN_DIR_ENV = "CARTRITA_TEST_RUN_DIR"


def share_run_dir() -> Path | None:
    """In the run's first process (the pytest-xdist controller, or a serial run): a 0755 folder
    every worker of this run shares, named in ``CARTRITA_TEST_RUN_DIR`` so the workers, which
    inherit the environment, find it. None in a worker (the controller made it). The caller
    removes it at the end of the run.

    It holds what is the same for every worker and costly to make: the local model's embedding
    cache (the demo's texts are embedded once per run, not once per worker; the cache is SQLite in
    WAL mode, safe for concurrent writers)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    path = Path(tempfile.mkdtemp(prefix="cartrita-run-"))
    path.chmod(0o755)
    os.environ[RUN_DIR_ENV] = str(path)
    return path


def embedding_cache(fallback_dir: Path) -> Path:
    """The run-wide embedding cache file (see ``share_run_dir``); in ``fallback_dir`` when the
    run has no shared folder (a test process started outside pytest's configure)."""
    shared = os.environ.get(RUN_DIR_ENV, "").strip()
    return Path(shared or fallback_dir) / "embedding-cache.sqlite"
