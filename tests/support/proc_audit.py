"""Record what every process on the machine shows in /proc while a run goes on.

Unlike :class:`support.faults.Watcher` (database tools only), this keeps the command line of every
process seen, and for the PostgreSQL client tools whose command line names a given folder, their
environment and the mode of the passfile it points at (read while the tool runs).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

from support.faults import cmdlines


class ProcessAudit(threading.Thread):
    """Polls /proc every few milliseconds until stopped.

    Attributes:
        seen: every distinct command line (arguments joined by spaces).
        tool_environ: pid -> environment (raw bytes) of pg_dump / pg_restore / psql processes whose
            command line contains ``marker``.
        passfiles: PGPASSFILE path -> (file mode, parent folder mode) as seen while in use.
    """

    TOOLS = ("pg_dump", "pg_restore", "psql")

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker = marker
        self.seen: set[str] = set()
        self.tool_environ: dict[int, bytes] = {}
        self.passfiles: dict[str, tuple[int, int]] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.poll()
            time.sleep(0.003)
        self.poll()

    def poll(self) -> None:
        for pid, line in cmdlines().items():
            self.seen.add(line)
            if pid in self.tool_environ or self.marker not in line:
                continue
            argv0 = line.split(" ", 1)[0]
            if os.path.basename(argv0) in self.TOOLS:
                self._read_tool(pid)

    def _read_tool(self, pid: int) -> None:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return
        self.tool_environ[pid] = environ
        for item in environ.split(b"\0"):
            if item.startswith(b"PGPASSFILE="):
                path = item.split(b"=", 1)[1].decode()
                try:
                    modes = (
                        stat.S_IMODE(os.stat(path).st_mode),
                        stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode),
                    )
                except OSError:
                    continue
                self.passfiles[path] = modes

    def tool_lines(self, tool: str) -> list[str]:
        """Command lines of ``tool`` that contain the marker."""
        return [
            line
            for line in self.seen
            if self.marker in line and os.path.basename(line.split(" ", 1)[0]) == tool
        ]

    def __enter__(self) -> ProcessAudit:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.join(timeout=10)
