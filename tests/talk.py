"""What tests share for talking to a test server: a raw client (lines out, whole replies in,
every read bounded), and a bounded wait on a condition, never a sleep that races a server."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from conformance.engine.address import ServerAddress

MAX_REPLY = 64 * 1024


def until(condition: Callable[[], object], *, within: float, every: float = 0.01) -> bool:
    """Whether ``condition()`` came true within ``within`` seconds (looked at every
    ``every``)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True


class Talk:
    """A raw client: ``with Talk(server.address) as talk:`` ...
    ``talk.say(b"NOOP\\r\\n") == b"250 OK\\r\\n"``."""

    def __init__(self, address: ServerAddress, *, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((address.host, address.port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.sock.close()

    def reply(self) -> bytes:
        """The next whole reply, up to its last line ("NNN " or "NNN" before CRLF)."""
        reply = b""
        while len(reply) < MAX_REPLY:
            while b"\n" not in self.buffer:
                data = self.sock.recv(4096)
                if not data:
                    return reply + self.buffer
                self.buffer += data
            line, _, self.buffer = self.buffer.partition(b"\n")
            reply += line + b"\n"
            if line[3:4] != b"-":
                return reply
        return reply

    def say(self, line: bytes) -> bytes:
        self.sock.sendall(line)
        return self.reply()

    def closed(self, *, within: float) -> bool:
        """Whether the server ends the stream within ``within`` seconds (what it sends
        before is read and dropped)."""
        self.sock.settimeout(within)
        try:
            while self.sock.recv(4096):
                pass
        except TimeoutError:
            return False
        except OSError:
            pass  # a reset is an end too
        return True
