"""A real, small filesystem for disk-full tests: a tmpfs mounted for the duration of a test."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(mountpoint: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a ``size_bytes`` tmpfs (mode 0755) at ``mountpoint``; always unmounted on exit.

    Skips the test (with the reason) when this process may not mount: not root, or mounting is
    not permitted here (e.g. an unprivileged container).
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(mountpoint)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(done.stderr or done.stdout).strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)  # busy: lazy


def fill(folder: Path) -> int:
    """Write a filler file into ``folder`` until its filesystem is full; returns bytes written."""
    written = 0
    with (folder / "filler").open("wb", buffering=0) as out:
        for size in (1 << 16, 4096, 1):  # big chunks, then the last partial blocks
            while True:
                try:
                    count = out.write(b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                if not count:
                    break
                written += count
    return written
