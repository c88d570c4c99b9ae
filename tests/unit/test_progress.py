"""Progress lines: done / total, rate, ETA, at least every interval, from any thread."""

from __future__ import annotations

import threading
import time

from cartrita_assets.progress import Progress, counted, human_count, human_seconds


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_line_at_most_every_interval_with_rate_and_eta():
    clock, lines = FakeClock(), []
    progress = Progress("hashing", 1000, "rows", lines.append, interval=10, clock=clock)
    clock.now += 4
    progress.advance(100)
    assert lines == []  # 4 s: too early for a line
    clock.now += 6
    progress.advance(100)  # 200 rows in 10 s: 20 rows/s, 800 left: 40 s
    assert lines == ["hashing: 200 rows of 1,000 rows (20%), 20 rows/s, ETA 40s, 10s elapsed"]
    clock.now += 5
    progress.advance(300)
    assert len(lines) == 1
    clock.now += 5
    progress.tick()
    assert len(lines) == 2 and "500 rows of 1,000 rows (50%)" in lines[1] and "ETA 20s" in lines[1]


def test_bytes_are_shown_in_binary_units_and_finish_sums_up():
    clock, lines = FakeClock(), []
    progress = Progress("pg_dump", 2 * 2**30, "bytes", lines.append, interval=10, clock=clock)
    clock.now += 20
    progress.set_done(512 * 2**20)
    assert lines[-1].startswith("pg_dump: 512.0 MiB of 2.0 GiB (25%), 25.6 MiB/s, ETA 1m00s")
    progress.set_done(100)  # a running total never goes back
    assert progress.done == 512 * 2**20
    clock.now += 20
    progress.set_done(2 * 2**30)
    progress.finish()
    assert lines[-1] == "pg_dump: done, 2.0 GiB in 40s (51.2 MiB/s)"


def test_unknown_total_has_no_percentage_and_no_eta():
    clock, lines = FakeClock(), []
    progress = Progress("Redis restore", None, "keys", lines.append, interval=1, clock=clock)
    clock.now += 2
    progress.advance(10)
    assert lines == ["Redis restore: 10 keys, 5 keys/s, 2s elapsed"]


def test_ticking_logs_while_nothing_advances_and_polls_a_running_total():
    lines: list[str] = []
    progress = Progress("pg_restore", 100, "bytes", lines.append, interval=0.05)
    written = iter(range(0, 1000, 10))
    with progress.ticking(poll=lambda: float(next(written))):
        time.sleep(0.4)
    assert lines, "a line appears without any advance()"
    assert progress.done > 0  # the poll's running total reached the counter
    count = len(lines)
    time.sleep(0.2)
    assert len(lines) == count  # the ticker stopped with the block


def test_a_failing_poll_does_not_stop_the_lines():
    lines: list[str] = []
    progress = Progress("pg_dump", None, "bytes", lines.append, interval=0.05)

    def poll() -> float:
        raise FileNotFoundError("a file went away while it was listed")

    with progress.ticking(poll=poll):
        time.sleep(0.3)
    assert lines


def test_advance_from_many_threads_counts_everything():
    progress = Progress("hashing", None, "rows", lambda _m: None, interval=0)
    threads = [
        threading.Thread(target=lambda: [progress.advance(1) for _ in range(1000)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert progress.done == 8000


def test_counted_yields_every_item_and_closes_with_a_line():
    lines: list[str] = []
    items = list(counted(iter("abc"), Progress("Redis read", 3, "keys", lines.append)))
    assert items == ["a", "b", "c"]
    assert lines[-1].startswith("Redis read: done, 3 keys in ")


def test_human_units():
    assert human_count(1536, "bytes") == "1.5 KiB"
    assert human_count(12, "bytes") == "12 B"
    assert human_count(1234567, "rows") == "1,234,567 rows"
    assert human_seconds(59.4) == "59s"
    assert human_seconds(185) == "3m05s"
    assert human_seconds(3720) == "1h02m"


def test_line_batch_logs_every_line_in_order_in_few_messages():
    from cartrita_assets.progress import LineBatch

    now = [0.0]
    messages: list[str] = []
    batch = LineBatch("pg_restore --verbose:", messages.append, every=2.0, clock=lambda: now[0])
    for i in range(10):
        now[0] = i * 0.5  # a line every half second
        batch(f"line {i}")
    batch.flush()
    batch.flush()  # nothing left: no empty message
    assert len(messages) == 3
    assert all(m.startswith("pg_restore --verbose:\n") for m in messages)
    lines = [line for m in messages for line in m.splitlines()[1:]]
    assert lines == [f"line {i}" for i in range(10)]
