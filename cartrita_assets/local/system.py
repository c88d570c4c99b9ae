"""Process and filesystem helpers shared by the local servers: root-safety, ports, waiting."""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cartrita_assets.errors import LocalServerError

SERVER_USER = "cartrita-db"


def running_as_root() -> bool:
    """PostgreSQL refuses to run as root; as root we run it as a system user instead."""
    return os.geteuid() == 0


def ensure_server_user() -> pwd.struct_passwd:
    """Return the unprivileged system user the servers run as, creating it when missing."""
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if not Path(useradd).exists():
        raise LocalServerError(
            f"Running as root needs a system user '{SERVER_USER}' for PostgreSQL, and useradd is "
            "not available. Create the user yourself or run as a non-root user."
        )
    cmd = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 9):  # 9: created concurrently by another process
        raise LocalServerError(f"Could not create system user '{SERVER_USER}': {result.stderr}")
    return pwd.getpwnam(SERVER_USER)


def as_server_user(cmd: Sequence[str]) -> list[str]:
    """Prefix ``cmd`` so it runs as the server user when we are root."""
    if not running_as_root():
        return list(cmd)
    ensure_server_user()
    return ["runuser", "-u", SERVER_USER, "--", *cmd]


def chown_to_server_user(path: Path) -> None:
    """Give ``path`` (recursively) to the server user when we are root."""
    if not running_as_root():
        return
    user = ensure_server_user()
    for p in [path, *path.rglob("*")]:
        os.lchown(p, user.pw_uid, user.pw_gid)


def ensure_traversable(path: Path, log: Callable[[str], None]) -> None:
    """Make every ancestor of ``path`` searchable by other users (o+x) when we are root.

    The server runs as an unprivileged user; it must be able to reach its data directory and the
    binaries. Only the search bit is added (no read bit), and each change is logged.
    """
    if not running_as_root():
        return
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
            log(f"Granted search permission (o+x) on {parent} so the database user can reach it.")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(low: int = 20000, high: int = 32000) -> int:
    """A TCP port that is free right now (for tests and throwaway servers).

    Chosen below Linux's ephemeral range (32768 and up): a port the kernel hands out for
    outgoing connections could be taken as a client's source port before the server binds it.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, high)
        if port_is_free(port):
            return port
    raise LocalServerError(f"No free TCP port found between {low} and {high}.")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie does not: it has exited and waits for its
    parent to reap it, and a daemon's parent is init, which on some machines reaps only every
    second or two (waiting on ``kill(pid, 0)`` alone would wait out that delay at every stop)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")  # gone since, or no /proc at all (macOS)
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it is true or raise ``LocalServerError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise LocalServerError(f"Timed out after {timeout:.0f}s waiting for {what}.")


def check_writable_dir(path: Path, purpose: str) -> None:
    """Create ``path`` or raise a clear error when it cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalServerError(
            f"Cannot create the {purpose} directory {path}: {exc.strerror}. "
            "Set CARTRITA_STATE_DIR to a writable folder."
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise LocalServerError(
            f"The {purpose} directory {path} is not writable. "
            "Fix its permissions or set CARTRITA_STATE_DIR to a writable folder."
        )
