"""Hostile SMTP servers: each misbehaves one named way on every connection, so the suite can
be shown to end, with a specific verdict, against servers that do not play fair.

Bounded on our side whatever the client does: at most ``MAX_CONNECTIONS`` at once, each for
at most ``MAX_SECONDS``; floods stream one shared chunk (never a buffer of their size) and
stop when the client goes away; every read times out. No name is ever resolved.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from conformance.testing.dialogue import MAX_LINE
from conformance.testing.faults import Fault, Faults
from conformance.testing.serving import Served
from tests.fault_server import MAX_MESSAGE, _Handler, _Server

MAX_CONNECTIONS = 32
MAX_SECONDS = 60.0  # a connection is dropped after this, whatever it is doing
POLL = 0.05  # how often a waiting connection looks at the stop flag
CHUNK = 64 * 1024
GIGABYTE = 1 << 30
GREETING = b"220 mx.hostile.test ESMTP hostile server\r\n"
# A reply line as long as a line may be for the client's parser, far over RFC 5321's 512
# octets: the bound on a whole reply is met before the one on its lines or on each line.
LONG_LINE = b"250-" + b"x" * 3994 + b"\r\n"


class _Peer(_Handler):
    """One connection, as a behaviour sees it: the conforming fault server's dialogue (from
    ``tests/fault_server.py``, no faults), plus the raw moves the behaviours are made of."""

    server: _HostileServer

    def setup(self) -> None:
        super().setup()
        self.request.settimeout(POLL)
        self.until = time.monotonic() + MAX_SECONDS

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            BEHAVIOURS[self.server.behaviour](self)

    @property
    def going(self) -> bool:
        return not self.server.stopping.is_set() and time.monotonic() < self.until

    def send(self, data: bytes) -> bool:
        """Write ``data``, waiting while the client does not read; False once the client has
        gone away, or the server stops."""
        view = memoryview(data)
        while view and self.going:
            try:
                view = view[self.request.send(view):]
            except TimeoutError:
                continue
            except OSError:
                return False
        return not view

    def stream(self, chunk: bytes, total: int = GIGABYTE) -> int:
        """``chunk`` again and again, up to ``total`` octets or until the client goes away;
        the octets sent."""
        sent = 0
        while sent < total and self.send(chunk):
            sent += len(chunk)
        with self.server.lock:
            self.server.streamed += sent
        return sent

    def ignore(self) -> None:
        """Read and drop whatever comes, answering nothing, until the client goes away."""
        self.request.settimeout(POLL)
        while self.going:
            try:
                if not self.request.recv(CHUNK):
                    return
            except TimeoutError:
                continue

    def dispatch(self, verb: str, argument: str) -> bool:
        answer = VERBS.get(self.server.behaviour, {}).get(verb.upper())
        return super().dispatch(verb, argument) if answer is None else answer(self, argument)

    def converse(self) -> None:
        """The fault server's conforming dialogue (its greeting is already sent); the
        behaviour's own verbs (VERBS) answered its way."""
        self.request.settimeout(5.0)  # the dialogue reads lines, as the fault server does
        while self.going and self.serve(self.command_line()):
            pass

    def first_command(self) -> bool:
        """Greet, and wait for the first command line (False: the client went away)."""
        if not self.send(GREETING):
            return False
        buffered = b""
        while self.going and b"\n" not in buffered and len(buffered) < MAX_LINE:
            try:
                data = self.request.recv(MAX_LINE)
            except TimeoutError:
                continue
            if not data:
                return False
            buffered += data
        return b"\n" in buffered


# --- the behaviours --------------------------------------------------------------------------

def never_greets(peer: _Peer) -> None:
    peer.ignore()


def greets_then_stalls(peer: _Peer) -> None:
    """A greeting, then silence: every command is read, none is answered."""
    if peer.send(GREETING):
        peer.ignore()


def garbage_without_crlf(peer: _Peer) -> None:
    """Instead of a greeting, octets without a line ending, for ever (up to a gigabyte)."""
    peer.stream(b"garbage " * (CHUNK // 8))


def endless_multiline_reply(peer: _Peer) -> None:
    """To the first command, a multiline reply whose last line never comes."""
    if peer.first_command():
        peer.stream(b"250-and there is more\r\n" * 2000)


def gigabyte_reply(peer: _Peer) -> None:
    """To the first command, a reply of a gigabyte, in lines of 4000 octets."""
    if peer.first_command():
        peer.stream(LONG_LINE * (CHUNK // len(LONG_LINE)), GIGABYTE - 9)
        peer.send(b"250 done\r\n")


def reset_mid_reply(peer: _Peer) -> None:
    """To the first command, half a reply, then a TCP reset (RST, not FIN)."""
    if peer.first_command() and peer.send(b"250-mx.hostile.test\r\n250 half a rep"):
        peer.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.request.close()  # now, before socketserver's shutdown() could send a FIN


def reply_before_any_command(peer: _Peer) -> None:
    """A reply nobody asked for right after the greeting (in the same write); then a
    conforming dialogue, in which every reply is one command late."""
    if peer.send(GREETING + b"250 nobody asked\r\n"):
        peer.converse()


def tls_handshake_never_completes(peer: _Peer) -> None:
    """STARTTLS advertised and answered 220, then no TLS: what the client sends is read
    and dropped, and nothing is answered."""
    if peer.send(GREETING):
        peer.converse()


def end_of_data_never_answered(peer: _Peer) -> None:
    """MAIL, RCPT and DATA answered as they should be; the end of data, never."""
    if peer.send(GREETING):
        peer.converse()


Behaviour = Callable[[_Peer], None]
BEHAVIOURS: dict[str, Behaviour] = {
    "never_greets": never_greets,
    "greets_then_stalls": greets_then_stalls,
    "garbage_without_crlf": garbage_without_crlf,
    "endless_multiline_reply": endless_multiline_reply,
    "gigabyte_reply": gigabyte_reply,
    "reset_mid_reply": reset_mid_reply,
    "reply_before_any_command": reply_before_any_command,
    "tls_handshake_never_completes": tls_handshake_never_completes,
    "end_of_data_never_answered": end_of_data_never_answered,
}
# Each behaviour as a fault, with the one check a run against it must fail (its bound in
# time, and what the complaint says: tests/test_hostile_servers.py).
HOSTILE = Faults(
    Fault("never_greets", "command_answered", "accepts the connection, never greets"),
    Fault("greets_then_stalls", "command_answered", "a greeting, then no reply ever"),
    Fault("garbage_without_crlf", "reply_well_formed", "octets without a line ending"),
    Fault("endless_multiline_reply", "reply_well_formed", "a multiline reply without end"),
    Fault("gigabyte_reply", "reply_well_formed", "a reply of a gigabyte"),
    Fault("reset_mid_reply", "no_silent_close", "half a reply, then a TCP reset"),
    Fault("reply_before_any_command", "reply_well_formed", "every reply one command late"),
    Fault("tls_handshake_never_completes", "command_answered",
          "STARTTLS answered 220, then no handshake"),
    Fault("end_of_data_never_answered", "command_answered", "the end of data never answered"),
)


# --- where a behaviour answers a verb of the dialogue its own way ----------------------------

Answer = Callable[[_Peer, str], bool]  # False: the connection ends


def _ehlo_with_starttls(peer: _Peer, argument: str) -> bool:
    if not argument:
        peer.reply("501 Syntax: EHLO domain")
        return True
    s = peer.session
    s.mail, s.recipients, s.greeted = False, 0, True
    peer.reply("250-mx.hostile.test\r\n250-8BITMIME\r\n250 STARTTLS")
    return True


def _starttls_then_nothing(peer: _Peer, argument: str) -> bool:
    if argument:
        peer.reply("501 Syntax: STARTTLS")
        return True
    peer.reply("220 Ready to start TLS")
    peer.ignore()
    return False


def _data_never_ended(peer: _Peer, argument: str) -> bool:
    if argument:
        peer.reply("501 No arguments allowed")
        return True
    if not peer.session.recipients:
        peer.reply("503 Need RCPT first")
        return True
    peer.reply("354 End data with <CRLF>.<CRLF>")
    size = 0  # the message is read (up to the fault server's bound), and dropped
    while size <= MAX_MESSAGE and peer.going and \
            (line := peer.wire.until_lf(MAX_LINE + 1)) != b".\r\n":
        size += len(line)
    peer.ignore()
    return False


# behaviour -> verb -> how it is answered
VERBS: Mapping[str, Mapping[str, Answer]] = {
    "tls_handshake_never_completes": {"EHLO": _ehlo_with_starttls,
                                      "STARTTLS": _starttls_then_nothing},
    "end_of_data_never_answered": {"DATA": _data_never_ended},
}


class _HostileServer(_Server):
    behaviour: str
    slots: threading.BoundedSemaphore
    streamed: int  # octets sent by floods, over the server's life
    connections: int  # open now

    def verify_request(self, request: object, client_address: object) -> bool:
        """A connection past ``MAX_CONNECTIONS`` at once is closed unanswered."""
        return self.slots.acquire(blocking=False)

    def process_request_thread(self, request: socket.socket,  # type: ignore[override]
                               client_address: object) -> None:
        with self.lock:
            self.connections += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.connections -= 1
            self.slots.release()


class HostileServer(Served):
    """``with HostileServer("never_greets") as server:`` ... ``server.address``."""

    def __init__(self, behaviour: str) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        server = _HostileServer(_Peer, keep=1000)
        server.behaviour = behaviour
        server.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        server.counts = Counter()
        server.streamed = server.connections = 0
        self._server: _HostileServer = server
        super().__init__(server, poll_interval=POLL)

    @property
    def streamed(self) -> int:
        """Octets the floods have sent, on every connection so far."""
        with self._server.lock:
            return self._server.streamed

    def idle(self, within: float) -> bool:
        """Whether every connection has ended (the clients went away) within ``within``
        seconds, the server still running."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self._server.lock:
                if not self._server.connections:
                    return True
            time.sleep(POLL)
        return False
