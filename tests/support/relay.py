"""A TCP relay: v1's loopback-only test servers seen at another address of this machine.

The suite's servers listen on 127.0.0.1 only, and follow mode's kubernetes preflight rightly
refuses a loopback v1 (a pod's loopback is the pod). `Relay` listens on this machine's outward
address at v1's port and pipes every connection, byte for byte, to the server on 127.0.0.1, so
v1 answers at an address a pod with host networking on this machine could use.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from types import TracebackType

import pytest


def outward_address() -> str:
    """This machine's IPv4 address on its default route (no packet is sent to find it)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # UDP connect only picks the route
            address = str(probe.getsockname()[0])
    except OSError as exc:
        pytest.skip(f"this machine has no route off loopback ({exc}): no outward address")
    if address.startswith("127."):
        pytest.skip("this machine has only loopback addresses")
    return address


class _Pipe(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        with socket.create_connection(self.server.target, timeout=5) as upstream:
            ends = {self.request: upstream, upstream: self.request}
            while True:
                ready, _, _ = select.select(list(ends), [], [], 1.0)
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    ends[end].sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    target: tuple[str, int]


class Relay:
    """Listens on ``host:port`` and relays each connection to ``target`` until closed."""

    def __init__(self, host: str, port: int, target: tuple[str, int]) -> None:
        self.server = _Server((host, port), _Pipe)
        self.server.target = target
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.2,), name="relay", daemon=True
        )

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
