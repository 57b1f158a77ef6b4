"""The SMTP side every test server shares: bounded line reading, replying, and per-verb
dispatch, so a misbehaving server is written as the few verbs it answers its own way.

    class Polite(SmtpHandler):
        greeting = "220 polite.example.test ESMTP"

        def on_noop(self, argument: str) -> bool:
            self.reply("250 OK")
            return True  # False: the session ends

    with Served(SmtpServer(Polite)) as served:
        ...  # NOOP (in any case) is answered 250; every other verb 500, by ``unrecognised``

Bounded: every read times out (``SmtpHandler.timeout``), a line is at most ``max_line``
octets, and the server records a bounded number of lines. Each session is followed by its
server (``ThreadedServer.follow``), so the server's end ends a blocked read at once.
"""

from __future__ import annotations

import select
import socket
import socketserver
from collections import deque
from collections.abc import Callable

from conformance.testing.serving import ThreadedServer

MAX_LINE = 4096  # octets of a line, its terminator included: far over RFC 5321's 512
RECV_SIZE = 4096
RECEIVED = 100_000  # command lines a server keeps, newest last


class Closed(ConnectionError):
    """The client ended the stream."""


class Wire:
    """A socket, read in bounded chunks, and what was read ahead of the line being answered
    (RFC 2920 §3.2: input read ahead is never lost)."""

    def __init__(self, sock: socket.socket, *, max_line: int = MAX_LINE) -> None:
        self.sock = sock
        self.max_line = max_line
        self.buffer = bytearray()
        self.fresh = False  # the last line came with a new read (not all of it read ahead)

    def _fill(self) -> bool:
        data = self.sock.recv(RECV_SIZE)  # the socket's timeout bounds the wait
        self.buffer += data
        self.fresh = self.fresh or bool(data)
        return bool(data)

    def _take(self, size: int) -> bytes:
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    def until_lf(self, limit: int) -> bytes:
        """What comes up to and with the next LF, at most ``limit`` octets (a part of a longer
        line; at the end of the stream, what was left). Closed: nothing was left."""
        while (end := self.buffer.find(b"\n", 0, limit)) < 0 and len(self.buffer) < limit:
            if not self._fill():
                if not self.buffer:
                    raise Closed
                break
        return self._take(end + 1 if end >= 0 else limit)

    def line(self) -> bytes:
        """The next line with its LF; an overlong one cut to ``max_line`` octets (no LF),
        the rest of it read and discarded."""
        self.fresh = False
        line = self.until_lf(self.max_line)
        if len(line) == self.max_line and not line.endswith(b"\n"):
            while not self.until_lf(self.max_line).endswith(b"\n"):
                pass
        return line

    def octets(self, size: int, keep: int) -> bytes:
        """Read exactly ``size`` octets; return at most the first ``keep`` of them."""
        kept = bytearray()
        while size:
            if not self.buffer and not self._fill():
                raise Closed
            part = self._take(size)
            size -= len(part)
            kept += part[:max(keep - len(kept), 0)]
        return bytes(kept)

    def unread(self, data: bytes) -> None:
        """Put ``data`` back, to be read before anything else."""
        self.buffer[:0] = data

    def waiting(self) -> bool:
        """Whether input has come beyond what was taken (looked at without blocking)."""
        return bool(self.buffer) or bool(select.select([self.sock], [], [], 0)[0])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class SmtpServer(ThreadedServer):
    """A threaded loopback server of SMTP sessions, told its ``faults`` (names its handler
    asks about with ``has``), keeping the command lines its sessions received."""

    def __init__(self, handler: type[SmtpHandler], *, faults: frozenset[str] = frozenset(),
                 keep: int = RECEIVED, host: str = "127.0.0.1") -> None:
        super().__init__(handler, host=host)
        self.faults = faults
        self.received: deque[bytes] = deque(maxlen=keep)  # overlong lines cut


Answer = Callable[[str], bool]  # a verb's argument -> whether the session goes on


class SmtpHandler(socketserver.BaseRequestHandler):
    """One session: greet, then answer each command line until a verb ends the session, the
    client goes away or stays silent for ``timeout`` seconds, or the server stops.

    ``on_<verb>`` (lower case) answers its verb, whatever case it was sent in; every verb
    without one goes to ``unrecognised``, every overlong line to ``too_long``."""

    server: SmtpServer
    request: socket.socket
    greeting = "220 smtp.example.test ESMTP test server"
    timeout = 30.0
    max_line = MAX_LINE
    line_limit = MAX_LINE  # a longer command line is refused (RFC 5321 §4.5.3.1.4: 512)
    wire: Wire

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.wire = Wire(self.request, max_line=self.max_line)
        self.server.follow(None, self.request)

    def handle(self) -> None:
        try:
            self.greet()
            while not self.server.stopping.is_set() and self.serve(self.command_line()):
                pass
        except OSError:  # gone (Closed), silent too long, a failed handshake, or stopped
            pass

    def finish(self) -> None:
        self.server.follow(self.wire.sock, None)
        if self.wire.sock is not self.request:
            self.wire.sock.close()  # a TLS socket; socketserver closes the plain one

    def has(self, fault: str) -> bool:
        return fault in self.server.faults

    def greet(self) -> None:
        self.reply(self.greeting)

    def reply(self, text: str) -> None:
        """One reply; the lines of a multiline one joined by CRLF in ``text``."""
        self.wire.send(text.encode("utf-8", "surrogateescape") + b"\r\n")

    def command_line(self) -> bytes:
        """The next command line. Only CRLF ends one (RFC 5321 §2.3.8): a bare LF is part of
        it."""
        line = self.wire.line()
        while line.endswith(b"\n") and not line.endswith(b"\r\n") and len(line) <= MAX_LINE:
            line += self.wire.line()
        return line

    def overlong(self, line: bytes) -> bool:
        return not line.endswith(b"\n") or len(line) > self.line_limit

    def serve(self, line: bytes) -> bool:
        """Answer one command line; False when the session is over."""
        self.server.received.append(line)
        if self.overlong(line):
            return self.too_long(line)
        text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        verb, _, argument = text.partition(" ")
        return self.dispatch(verb, argument.strip())

    def dispatch(self, verb: str, argument: str) -> bool:
        answer: Answer | None = getattr(self, f"on_{verb.lower()}", None) \
            if verb.isascii() and verb.isalpha() else None
        return self.unrecognised(verb, argument) if answer is None else answer(argument)

    def unrecognised(self, verb: str, argument: str) -> bool:
        self.reply("500 Command unrecognized")
        return True

    def too_long(self, line: bytes) -> bool:
        self.reply("500 Line too long")
        return True
