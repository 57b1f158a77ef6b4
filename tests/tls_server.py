"""TLS for the tests: trustme certificates, and a small STARTTLS server that can misbehave.

The server runs one script per connection (``ScriptedServer``): EHLO advertises STARTTLS, a
220 to STARTTLS is followed by the handshake, and after it the pipelining server of
tests/batch_server.py answers, over TLS. Each fault is one keyword. Every socket operation
is bounded by ScriptedServer.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections import deque
from pathlib import Path

import trustme

from conformance.engine.client import tls_context
from tests.batch_server import serve_batches
from tests.scripted_server import Lines, Script

SERVER_NAME = "mx.example.test"
GREETING = b"220 mx.example.test ESMTP tls test server\r\n"


class Certificates:
    """A throwaway CA (trustme) and a certificate for SERVER_NAME that it signed; the CA
    certificate is written to ``directory`` for ``tls_context(cafile=...)``."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert(SERVER_NAME)
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        return context

    def client_context(self, *, verify: bool = True) -> ssl.SSLContext:
        """Verifying against this CA; or, ``verify=False``, verifying nothing."""
        return tls_context(cafile=self.ca_file, verify=verify)


def starttls_server(context: ssl.SSLContext, *, handshake: bool = True,
                    answers_injected: bool = False, injected_later: bool = False,
                    batch_fault: str | None = None, seen: deque[bytes] | None = None) -> Script:
    """The script of a server with STARTTLS.

    ``handshake=False``: after its 220 it never reads the client's hello (a handshake that
    never completes). ``answers_injected``: commands that came in the same write as STARTTLS
    are answered in plaintext, right after the 220 and in the same write (CVE-2011-0411);
    ``injected_later``: that answer comes in a write of its own, 0.1 s later. ``batch_fault``:
    how batches are answered wrong over TLS (BATCH_FAULTS). ``seen``: what was received, in
    order: each line before TLS, each read (a batch, or one line) after.
    """
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(GREETING)
        lines = Lines(conn)
        while line := lines.next():
            if seen is not None:
                seen.append(line)
            if line.split(b" ")[0].strip().upper() != b"STARTTLS":
                conn.sendall(_answer(line))
                continue
            injected = lines.take_buffered()
            if seen is not None:
                seen.extend(injected)
            answers = b"".join(_answer(extra) for extra in injected) \
                if answers_injected else b""
            conn.sendall(b"220 2.0.0 Ready to start TLS\r\n" + (b"" if injected_later
                                                                  else answers))
            if injected_later:
                stop.wait(0.1)
                conn.sendall(answers)
            if not handshake:
                stop.wait(10)
                return
            with context.wrap_socket(conn, server_side=True) as tls:
                serve_batches(tls, stop, batch_fault, seen=seen)
            return
    return script


def _answer(line: bytes) -> bytes:
    """Before TLS."""
    verb = line.split(b" ")[0].strip().upper()
    if verb == b"EHLO":
        return b"250-mx.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
    if verb == b"QUIT":
        return b"221 Bye\r\n"
    return b"250 2.0.0 Ok\r\n"
