"""A session transcript: what the client sent (C:) and the server replied (S:), timed.

Bounded: past ``max_entries`` the oldest entries are dropped and counted, so a long session
cannot grow memory without limit. Rendering escapes every byte a terminal would hide.
"""

from __future__ import annotations

import time
import unicodedata
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Direction = Literal["C", "S", "*"]  # client, server, or an event such as a close


@dataclass(frozen=True)
class Entry:
    at: float  # seconds since the transcript began
    direction: Direction
    data: bytes


_NAMED = {0x5C: "\\\\", 0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t"}
# Octets shown as they are: printable US-ASCII but the backslash (the escape character).
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b != 0x5C)
# What a terminal would act on or hide: control characters (C0, DEL, C1), format characters
# (such as a right-to-left override), and line and paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def escape_line(line: bytes) -> str:
    """One protocol line as readable text: CRLF dropped, anything unusual escaped."""
    return escape_octets(line[:-2] if line.endswith(b"\r\n") else line)


def escape_octets(data: bytes) -> str:
    """Octets as readable text, exactly: printable US-ASCII as it is, a backslash doubled,
    CR, LF and HT as \\r, \\n, \\t, any other octet as \\xHH."""
    if not data.translate(None, _PLAIN):  # the usual line: nothing to escape
        return data.decode("ascii")
    out = []
    for byte in data:
        if 0x20 <= byte < 0x7F and byte != 0x5C:
            out.append(chr(byte))
        else:
            out.append(_NAMED.get(byte, f"\\x{byte:02x}"))
    return "".join(out)


def escape_text(text: str) -> str:
    """Text for a terminal, escaped as ``escape_line`` escapes a protocol line, but only what
    a terminal would act on or hide: printable text (``§``, a backslash) is left as it is."""
    return "".join(_escaped(char) if unicodedata.category(char) in _HIDDEN else char
                   for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return _NAMED.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_reply_text(text: str) -> str:
    """Reply text as the parser decoded it (UTF-8, other octets kept as surrogates), escaped
    octet by octet as ``escape_line`` does: what the server sent, exactly."""
    return escape_line(text.encode("utf-8", "surrogateescape"))


def split_lines(data: bytes) -> list[bytes]:
    """Split after each LF, keeping terminators (so a bare LF stays visible as \\n)."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    return [*lines, parts[-1]] if parts[-1] else lines


class Transcript:
    def __init__(self, *, max_entries: int = 5000) -> None:
        self._entries: deque[Entry] = deque(maxlen=max_entries)
        self._start = time.monotonic()
        self.dropped = 0

    def _add(self, direction: Direction, data: bytes) -> None:
        if len(self._entries) == self._entries.maxlen:
            self.dropped += 1
        self._entries.append(Entry(time.monotonic() - self._start, direction, data))

    def client(self, data: bytes) -> None:
        self._add("C", data)

    def server(self, data: bytes) -> None:
        self._add("S", data)

    def event(self, text: str) -> None:
        self._add("*", text.encode())

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def render(self, *, timestamps: bool = True, max_line: int = 200) -> str:
        """The transcript as ``C: ...`` / ``S: ...`` lines, one per protocol line."""
        lines = [f"... {self.dropped} earlier entries dropped"] if self.dropped else []
        for entry in self._entries:
            stamp = f"{entry.at:8.3f} " if timestamps else ""
            if entry.direction == "*":
                lines.append(f"{stamp}*  {entry.data.decode()}")
                continue
            for raw in split_lines(entry.data):
                text = escape_line(raw)
                if not raw.endswith(b"\r\n"):
                    text += "  <no CRLF>"
                if len(text) > max_line:
                    text = f"{text[:max_line]}... ({len(raw)} octets)"
                lines.append(f"{stamp}{entry.direction}: {text}")
        return "\n".join(lines)
