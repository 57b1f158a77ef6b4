"""Small misbehaving TCP servers for client tests: each runs a script against a connection,
one connection at a time (a script may keep state from one to the next).

On conformance.testing.serving's lifecycle: every connection times out, the script is told
the server stops (``stop``), and the end of the server ends a script blocked in a read.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable

from conformance.testing.serving import Served, ThreadedServer

Script = Callable[[socket.socket, threading.Event], None]
CONNECTION_TIMEOUT = 5.0


class _Scripted(socketserver.BaseRequestHandler):
    server: _ScriptServer
    request: socket.socket

    def handle(self) -> None:
        self.request.settimeout(CONNECTION_TIMEOUT)
        self.server.follow(None, self.request)
        try:
            with contextlib.suppress(OSError):
                self.server.script(self.request, self.server.stopping)
        finally:
            self.server.follow(self.request, None)


class _ScriptServer(ThreadedServer):
    script: Script

    def process_request(self, request: socket.socket,  # type: ignore[override]
                        client_address: object) -> None:
        """In the serving thread: the next connection waits for this one's script."""
        socketserver.TCPServer.process_request(self, request, client_address)


class ScriptedServer(Served):
    """``with ScriptedServer(script) as server:`` ... ``server.address``."""

    def __init__(self, script: Script, *, host: str = "127.0.0.1") -> None:
        server = _ScriptServer(_Scripted, host=host)
        server.script = script
        super().__init__(server)


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
