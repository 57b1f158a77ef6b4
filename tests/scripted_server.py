"""Small misbehaving TCP servers for client tests: each runs a script against one connection.

Bounded: the listening socket and every connection time out, and stop() joins the thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

from conformance.engine.address import ServerAddress

Script = Callable[[socket.socket, threading.Event], None]


class ScriptedServer:
    def __init__(self, script: Script, *, host: str = "127.0.0.1") -> None:
        self._script = script
        self._stop = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self._listener.settimeout(0.2)
        host, port = self._listener.getsockname()[:2]
        self.address = ServerAddress(host, port)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5.0)
                with contextlib.suppress(OSError):
                    self._script(conn, self._stop)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=10)


def read_line(conn: socket.socket, limit: int = 4096) -> bytes:
    """One command line from the client (bounded); b"" when the client went away."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = conn.recv(1)
        if not chunk:
            return data
        data += chunk
    return data


class Lines:
    """Command lines from a socket, read in chunks (so the lines of one write arrive
    together, as a pipelining server sees them), each bounded by ``limit`` octets."""

    def __init__(self, conn: socket.socket, *, limit: int = 4096) -> None:
        self.conn = conn
        self.limit = limit
        self.buffer = b""

    def next(self) -> bytes:
        """The next line, terminator included; b"" when the client went away."""
        while b"\n" not in self.buffer and len(self.buffer) < self.limit:
            chunk = self.conn.recv(self.limit)
            if not chunk:
                return b""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def take_buffered(self) -> list[bytes]:
        """The complete lines already received, without reading more (a part of a line
        stays in the buffer)."""
        *lines, self.buffer = self.buffer.split(b"\n")
        return [line + b"\n" for line in lines]
