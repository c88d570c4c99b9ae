"""Free TCP ports for the servers a test starts, each pytest-xdist worker in a range of its own.

``free_port`` of the project picks at random in 20000-32000 and checks the port is free; between
that check and the server binding it, another worker could pick the same port. Each worker
(``PYTEST_XDIST_WORKER=gwN`` of ``PYTEST_XDIST_WORKER_COUNT``) picks only in its own slice of that
range, so two workers of one run never pick the same port. A serial run uses the whole range.
"""

from __future__ import annotations

import os

from cartrita_assets.local.system import free_port as _free_port

LOW, HIGH = 20000, 32000


def worker_range(worker: str | None = None, count: str | None = None) -> tuple[int, int]:
    """The ports (low inclusive, high exclusive) the worker named ``worker`` (``gw0``, ``gw1``,
    ...) of ``count`` workers picks from (default: this process's); the whole range outside
    xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "") if count is None else count
    if not worker.startswith("gw") or not worker[2:].isdigit() or not count.isdigit():
        return LOW, HIGH
    index, workers = int(worker[2:]), max(int(count), 1)
    width = (HIGH - LOW) // workers
    low = LOW + (index % workers) * width
    return low, low + width


def free_port() -> int:
    """A TCP port free right now, in this worker's range."""
    return _free_port(*worker_range())
