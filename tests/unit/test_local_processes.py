"""How the local servers' code tells a running process from one that has exited."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cartrita_assets.local.system import process_alive


def test_a_running_process_is_alive_and_an_exited_unreaped_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        assert process_alive(child.pid)
        child.stdin.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while process_alive(child.pid):  # exits at once, but stays a zombie until waited for
            assert time.monotonic() < deadline, "an exited, unreaped process still counts as alive"
            time.sleep(0.01)
        with open(f"/proc/{child.pid}/stat") as stat:  # it is a zombie: kill(pid, 0) succeeds
            assert stat.read().rsplit(")", 1)[1].split()[0] == "Z"
        os.kill(child.pid, 0)
    finally:
        child.wait(timeout=30)
    assert not process_alive(child.pid)


def test_this_process_is_alive():
    assert process_alive(os.getpid())
