"""Fault injection helpers: see every child process's command line, act when one appears."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path


def cmdlines() -> dict[int, str]:
    """pid -> command line of every process visible in /proc.

    Watchers call this every few milliseconds for a whole run, so it uses plain strings and
    ``open`` rather than ``Path`` objects: it runs beside the code under test, on the same cores.
    """
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as file:
                    raw = file.read()
            except OSError:
                continue
            out[int(name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return out


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` (None when it is gone)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descends_from(pid: int, ancestor: int) -> bool:
    """True when ``ancestor`` is ``pid``'s parent, grandparent, ... (not ``pid`` itself)."""
    seen: set[int] = set()
    current: int | None = parent_pid(pid)
    while current and current not in seen:
        if current == ancestor:
            return True
        seen.add(current)
        current = parent_pid(current)
    return False


class Watcher(threading.Thread):
    """Polls /proc; records every pg_dump/pg_restore/postgres/redis command line, and runs
    ``action(pid)`` once, the first time a command line of a process this test started (a
    descendant of this process: never another test worker's) contains ``trigger``."""

    def __init__(self, trigger: str | None = None, action: Callable[[int], None] | None = None):
        super().__init__(daemon=True)
        self.trigger, self.action = trigger, action
        self.seen: set[str] = set()
        self.fired = False
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for pid, line in cmdlines().items():
                if any(
                    tool in line
                    for tool in (
                        "pg_dump",
                        "pg_restore",
                        "postgres",
                        "redis-server",
                        "valkey-server",
                    )
                ):
                    self.seen.add(line)
                if (
                    self.trigger
                    and not self.fired
                    and self.trigger in line
                    and descends_from(pid, os.getpid())
                ):
                    self.fired = True
                    assert self.action is not None
                    self.action(pid)
            time.sleep(0.02)  # a trigger waits on tools that run for seconds

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.join(timeout=5)


def postmaster_pid(data_dir: Path) -> int:
    """The postmaster's pid from its data directory."""
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def kill(pid: int) -> None:
    """SIGKILL, ignoring a process that is already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc/<pid>/stat."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def crash_server(data_dir: Path) -> None:
    """Kill a PostgreSQL server the way a crash does: the postmaster and every backend at once
    (SIGKILL on the postmaster alone leaves backends serving their open connections)."""
    pid = postmaster_pid(data_dir)
    for child in children(pid):
        kill(child)
    kill(pid)
