"""The lifecycle every test server shares, for the suite's own tests and for anyone who
builds a misbehaving server of their own: a threaded TCP server on loopback, served from a
thread of its own from ``with`` to its end, an end that also ends its open sessions.

    class Mine(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"220 mine.example.test ESMTP\\r\\n")

    with Served(ThreadedServer(Mine)) as served:
        ...  # talk to served.address

A handler reads until ``self.server.stopping`` is set; one that registers its socket
(``ThreadedServer.follow``) has it shut down at the end, so a blocked read ends at once.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
import time
from types import TracebackType
from typing import Self

from conformance.engine.address import ServerAddress


class ThreadedServer(socketserver.ThreadingTCPServer):
    """A thread per connection, on 127.0.0.1 (or ``host``, IPv6 too) at a free port."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler], *,
                 host: str = "127.0.0.1") -> None:
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sessions: set[socket.socket] = set()  # sockets to shut down at the end
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), handler)

    def follow(self, old: socket.socket | None, new: socket.socket | None) -> None:
        """A session's socket is now ``new`` (None: it ended), no longer ``old`` (a TLS
        upgrade wraps the plain one)."""
        with self.lock:
            self.sessions.discard(old)
            if new is not None:
                self.sessions.add(new)

    def end_sessions(self) -> None:
        with self.lock:
            for sock in self.sessions:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the session's read ends at once

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-reply (as a safe-mode session does) is no error."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class Served:
    """``server`` served from a thread of its own, from ``with`` to its end."""

    def __init__(self, server: ThreadedServer, *, poll_interval: float = 0.05) -> None:
        self._server = server
        host, port = server.server_address[:2]
        self.address = ServerAddress(str(host), int(port))
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": poll_interval}, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        server = self._server
        server.stopping.set()
        server.end_sessions()  # first: a server serving one session at a time is in it
        server.shutdown()
        server.server_close()
        server.end_sessions()  # and any that began meanwhile
        self._thread.join(timeout=5)
        time.sleep(0)  # let the ended sessions' threads run
