"""A small pipelining SMTP server (RFC 2920) for batch tests, which can answer a batch wrong.

It reads in chunks: the complete lines of one read are a batch, and their replies go out in
one write. Each fault is one way of answering a batch of two or more commands wrong.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from dataclasses import dataclass

from conformance.testing.faults import Fault, Faults
from tests.scripted_server import Lines, Script

GREETING = b"220 mx.example.test ESMTP pipelining test server\r\n"
BATCH_FAULTS = Faults(  # (tests/test_batch.py)
    Fault("short", "pipelining_answers_every_command", "the last reply of a batch never sent"),
    Fault("first_only", "pipelining_answers_every_command",
          "only the first reply of a batch sent"),
    # The first command gets the last one's reply: a code its row may not have.
    Fault("reversed", "reply_code_documented", "the replies of a batch sent in reverse order"),
)


@dataclass
class _State:
    mail: bool = False
    recipients: int = 0
    data: bool = False  # reading mail data
    quit: bool = False

    def answer(self, line: bytes) -> bytes | None:
        """The reply to ``line``; None for a line of mail data."""
        if self.data:
            if line != b".\r\n":
                return None
            self.data, self.mail, self.recipients = False, False, 0
            return b"250 Message accepted\r\n"
        verb = line.split(b" ")[0].strip().upper()
        if verb in (b"EHLO", b"HELO", b"RSET"):
            self.mail, self.recipients = False, 0
            return b"250-mx.example.test\r\n250 PIPELINING\r\n" if verb == b"EHLO" else \
                b"250 OK\r\n"
        if verb == b"MAIL":
            if self.mail:
                return b"503 Nested MAIL\r\n"
            self.mail = True
            return b"250 OK\r\n"
        if verb == b"RCPT":
            if not self.mail:
                return b"503 Need MAIL first\r\n"
            self.recipients += 1
            return b"250 OK\r\n"
        if verb == b"DATA":
            if not self.recipients:
                return b"503 Need RCPT first\r\n"
            self.data = True
            return b"354 End data with <CRLF>.<CRLF>\r\n"
        if verb == b"NOOP":
            return b"250 OK\r\n"
        if verb == b"HELP":
            return b"214 See RFC 5321\r\n"
        if verb == b"QUIT":
            self.quit = True
            return b"221 Bye\r\n"
        return b"500 Command unrecognized\r\n"


def _faulty(replies: list[bytes], fault: str | None) -> list[bytes]:
    if fault is None or len(replies) < 2:
        return replies
    if fault == "short":
        return replies[:-1]
    if fault == "first_only":
        return replies[:1]
    return replies[::-1]


def pipelining_server(fault: str | None = None, *, seen: deque[bytes] | None = None) -> Script:
    """The script of a pipelining server; ``fault``: one of BATCH_FAULTS, None for none.
    ``seen``: each read's lines, joined (one entry per batch as the server saw it)."""
    BATCH_FAULTS.choose([fault])

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(GREETING)
        serve_batches(conn, stop, fault, seen=seen)
    return script


def serve_batches(conn: socket.socket, stop: threading.Event, fault: str | None, *,
                  seen: deque[bytes] | None = None) -> None:
    """Answer the client on ``conn`` (plain or TLS, after the greeting) until it quits."""
    lines, state = Lines(conn), _State()
    while (first := lines.next()) and not stop.is_set():
        batch = [first, *lines.take_buffered()]
        if seen is not None:
            seen.append(b"".join(batch))
        replies = [reply for line in batch if (reply := state.answer(line)) is not None]
        conn.sendall(b"".join(_faulty(replies, fault)))
        if state.quit:
            return
