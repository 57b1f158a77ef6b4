"""The test servers' shared lifecycle (conformance.testing.serving): served from ``with`` to
its end, and the end ends the sessions still open, so no test waits on a blocked read."""

from __future__ import annotations

import socket
import socketserver
import threading

from conformance.testing.serving import Served, ThreadedServer

ended = threading.Event()


class Greets(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"220 mine.example.test ESMTP\r\n")


class WaitsForever(socketserver.BaseRequestHandler):
    """Registers its socket and blocks reading, as a server waiting for a command does."""

    def handle(self) -> None:
        server = self.server
        assert isinstance(server, ThreadedServer)
        server.follow(None, self.request)
        self.request.sendall(b"220 waiting\r\n")
        try:
            while self.request.recv(4096) and not server.stopping.is_set():
                pass
        except OSError:
            pass
        finally:
            server.follow(self.request, None)
            ended.set()


def test_the_docstrings_server_greets_on_loopback():
    with Served(ThreadedServer(Greets)) as served, \
            socket.create_connection((served.address.host, served.address.port),
                                     timeout=5) as client:
        assert served.address.host == "127.0.0.1"
        assert client.recv(512) == b"220 mine.example.test ESMTP\r\n"


def test_the_end_of_the_server_ends_a_session_blocked_in_a_read():
    ended.clear()
    served = Served(ThreadedServer(WaitsForever))
    with served:
        client = socket.create_connection((served.address.host, served.address.port),
                                          timeout=5)
        assert client.recv(512) == b"220 waiting\r\n"
    try:  # the client is still connected: only the server's end can end the session
        assert ended.wait(timeout=2)
    finally:
        client.close()
