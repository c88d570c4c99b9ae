"""Progress lines a person can read: done / total, rate and ETA, at least every ``interval`` s.

One :class:`Progress` per long step (dump, restore, hashing, Redis copy). Workers call
:meth:`Progress.advance` from any thread; a line is logged when ``interval`` seconds passed since
the last one. :meth:`Progress.ticking` adds a background ticker so a line appears every
``interval`` seconds even while nothing advances (a slow table), and :meth:`Progress.finish`
logs the closing line.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Log = Callable[[str], None]
T = TypeVar("T")


def human_count(n: float, unit: str) -> str:
    """``1.2 GiB`` / ``340.0 MiB`` for bytes, ``1,234,567 rows`` otherwise."""
    if unit == "bytes":
        for size, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if n >= size:
                return f"{n / size:.1f} {name}"
        return f"{int(n)} B"
    return f"{int(n):,} {unit}"


def human_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Thread-safe counter of work done that logs ``label: done / total (pct), rate, ETA``.

    Args:
        label: what is being done, e.g. ``"pg_dump"``.
        total: the expected amount (an estimate is fine; ``None`` when unknown: no ETA).
        unit: ``"bytes"`` or a noun such as ``"rows"`` or ``"keys"``.
        log: where lines go.
        interval: seconds between lines at most while work goes on.
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        label: str,
        total: float | None,
        unit: str,
        log: Log,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit, self.log = label, total, unit, log
        self.interval, self.clock = interval, clock
        self.done = 0.0
        self.started = clock()
        self._last_line = self.started
        self._lock = threading.Lock()

    def advance(self, amount: float = 1) -> None:
        """Add ``amount`` of work done; logs a line when ``interval`` seconds passed."""
        with self._lock:
            self.done += amount
        self.tick()

    def set_done(self, done: float) -> None:
        """Set the amount done (for sources that report a running total)."""
        with self._lock:
            self.done = max(self.done, done)
        self.tick()

    def tick(self) -> None:
        """Log a line if ``interval`` seconds passed since the last one."""
        now = self.clock()
        with self._lock:
            if now - self._last_line < self.interval:
                return
            self._last_line = now
        self.log(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The current progress line."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {human_count(self.done, self.unit)}"
        if self.total:
            pct = min(100.0, 100.0 * self.done / self.total)
            text += f" of {human_count(self.total, self.unit)} ({pct:.0f}%)"
        text += f", {human_count(rate, self.unit)}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {human_seconds((self.total - self.done) / rate)}"
        return text + f", {human_seconds(elapsed)} elapsed"

    def finish(self) -> None:
        """Log the closing line: everything done, the average rate and the time taken."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        self.log(
            f"{self.label}: done, {human_count(self.done, self.unit)} in "
            f"{human_seconds(elapsed)} ({human_count(rate, self.unit)}/s)"
        )

    @contextlib.contextmanager
    def ticking(self, poll: Callable[[], float] | None = None) -> Iterator[Progress]:
        """Log at least every ``interval`` seconds while the block runs.

        Args:
            poll: called about once a second; its result is the total done so far (e.g. bytes
                a child process has written), for work that is not counted by ``advance``.
        """
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(min(1.0, self.interval)):
                if poll is not None:
                    with contextlib.suppress(Exception):  # a racing file removal, a closed conn
                        self.set_done(poll())
                        continue
                self.tick()

        ticker = threading.Thread(target=run, daemon=True, name=f"progress {self.label}")
        ticker.start()
        try:
            yield self
        finally:
            stop.set()
            ticker.join()


def counted(items: Iterable[T], progress: Progress) -> Iterator[T]:
    """``items`` unchanged, advancing ``progress`` by one for each."""
    with progress.ticking():
        for item in items:
            yield item
            progress.advance()
    progress.finish()


class LineBatch:
    """A tool's output lines logged together: one message of every line gathered, at most every
    ``every`` seconds (and the rest on ``flush``), so pg_restore's hundreds of ``--verbose``
    lines become a few events in the run's log, each line still in them, in order. Thread-safe.

    Args:
        label: the first line of each message, e.g. ``"pg_restore:"``.
        log: where messages go.
        every: seconds between messages at most while lines arrive.
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        label: str,
        log: Log,
        *,
        every: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.log, self.every, self.clock = label, log, every, clock
        self._lines: list[str] = []
        self._last = clock()
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        """Gather ``line``; log the gathered lines when ``every`` seconds passed."""
        with self._lock:
            self._lines.append(line)
            if self.clock() - self._last < self.every:
                return
            text, self._lines, self._last = self._take(), [], self.clock()
        self.log(text)

    def flush(self) -> None:
        """Log whatever was gathered since the last message."""
        with self._lock:
            if not self._lines:
                return
            text, self._lines, self._last = self._take(), [], self.clock()
        self.log(text)

    def _take(self) -> str:
        return "\n".join([self.label, *self._lines])
