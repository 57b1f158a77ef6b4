"""Sans-IO SMTP reply parser: bytes in, complete ``Reply`` values out (RFC 5321 §4.2).

No sockets here. The parser is strict: every deviation is recorded as a ``Violation``; only
a stream that can no longer be split into replies raises ``ReplyFramingError``. Hard bounds
keep memory use flat whatever the peer sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.protocol import grammar
from conformance.protocol.errors import ReplyFramingError
from conformance.protocol.violations import Violation

CRLF = b"\r\n"
# What reply text may hold (CR is reported on its own, as bare-cr): deleted by translate, what
# is left is what breaks textstring.
_TEXT_OR_CR = bytes(sorted(grammar.TEXTSTRING_OCTETS | {0x0D}))


@dataclass(frozen=True)
class Limits:
    """Hard bounds past which the parser stops instead of buffering."""

    max_line_octets: int = 8192
    max_lines: int = 1000
    max_reply_octets: int = 256 * 1024

    def __post_init__(self) -> None:
        if min(self.max_line_octets, self.max_lines, self.max_reply_octets) < 1:
            raise ValueError("parser limits must be positive")


@dataclass(frozen=True)
class Reply:
    """One complete reply: its code, the text of each line, and the exact bytes received."""

    code: int
    lines: tuple[str, ...]
    raw: bytes = field(default=b"", repr=False, compare=True)
    violations: tuple[Violation, ...] = ()

    @classmethod
    def build(cls, code: int, *lines: str) -> Reply:
        """A well-formed reply, rendered as a conforming server would send it."""
        texts = lines or ("",)
        raw = b"".join(
            b"%d%s%s\r\n" % (code, b"-" if i < len(texts) - 1 else b" ", text.encode())
            for i, text in enumerate(texts)
        )
        return cls(code, texts, raw)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def multiline(self) -> bool:
        return len(self.lines) > 1

    @property
    def first_digit(self) -> int:
        return self.code // 100

    @property
    def well_formed(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        return " / ".join(f"{self.code} {line}".rstrip() for line in self.lines)


class ReplyParser:
    """Incremental reply parser. ``feed`` bytes, then call ``next_reply`` until it is None.

    ``smtputf8``: UTF-8 text is allowed in replies (RFC 6531 §3.7.4); otherwise 8-bit octets
    in reply text are a violation.
    """

    def __init__(self, *, limits: Limits | None = None, smtputf8: bool = False) -> None:
        self.limits = limits or Limits()
        self.smtputf8 = smtputf8
        self._buffer = bytearray()
        # The reply in progress: its raw lines, their texts, what they broke, its code.
        self._lines: list[bytes] = []
        self._texts: list[str] = []
        self._violations: list[Violation] = []
        self._code = 0
        self._reply_octets = 0

    @property
    def pending(self) -> bytes:
        """Bytes received that do not yet make a complete reply."""
        return b"".join(self._lines) + bytes(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._check_unterminated_line()

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None if more bytes are needed."""
        while (raw_line := self._take_line()) is not None:
            if self._parse_line(raw_line):
                return self._finish()
        return None

    # --- internals -------------------------------------------------------------------------

    def _fail(self, rule: str, detail: str, offending: bytes, *, taken: bytes = b""
              ) -> ReplyFramingError:
        """The error to raise when framing is lost; what was buffered is dropped. ``taken``:
        the line already taken from the buffer that broke the rule (so the error's partial
        bytes are everything unreplied, in order)."""
        violation = Violation(rule, detail, offending[:200], line=len(self._lines))
        partial = b"".join(self._lines) + taken + bytes(self._buffer)
        error = ReplyFramingError(violation, partial=partial[:1024])
        self._buffer.clear()
        self._start_reply()
        return error

    def _check_unterminated_line(self) -> None:
        if b"\n" not in self._buffer and len(self._buffer) > self.limits.max_line_octets:
            raise self._fail(
                "line-bound",
                f"more than {self.limits.max_line_octets} octets without a line ending",
                bytes(self._buffer[:80]),
            )

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            self._check_unterminated_line()
            return None
        if end + 1 > self.limits.max_line_octets:
            raise self._fail(
                "line-bound",
                f"reply line of {end + 1} octets exceeds {self.limits.max_line_octets}",
                bytes(self._buffer[:80]),
            )
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def _note(self, rule: str, detail: str, offending: bytes = b"") -> None:
        self._violations.append(Violation(rule, detail, offending, line=len(self._lines)))

    def _parse_line(self, raw_line: bytes) -> bool:
        """Parse one terminated line into the reply in progress; True if it was the last."""
        if raw_line.endswith(CRLF):
            content = raw_line[:-2]
        else:
            content = raw_line[:-1]
            self._note("bare-lf", "line ends in LF without CR", raw_line[-80:])
        code_bytes = content[:3]
        if len(code_bytes) < 3 or not code_bytes.isdigit():
            raise self._fail("no-reply-code", "line does not start with three digits", raw_line,
                             taken=raw_line)
        code = int(code_bytes)
        if self._lines:
            if code != self._code:
                self._note(
                    "multiline-code-mismatch",
                    f"line carries {code}, the reply began with {self._code}",
                    raw_line[:80],
                )
        else:
            self._code = code
            if grammar.REPLY_CODE_RE.match(code_bytes.decode()) is None:
                self._note("reply-code-range", f"{code} is not a valid Reply-code", code_bytes)

        separator, text = content[3:4], content[4:]
        last = separator != b"-"
        if separator == b"":
            self._note("code-without-text", "the code ends the line")
        elif separator not in grammar.REPLY_LINE_SEPARATORS:
            self._note("separator", f"{separator!r} follows the code", content[:8])
            text = content[3:]

        self._check_text(text)
        if len(content) + 2 > grammar.MAX_REPLY_LINE_OCTETS:
            self._note(
                "line-too-long",
                f"{len(content) + 2} octets, over {grammar.MAX_REPLY_LINE_OCTETS}",
                content[:40],
            )
        self._lines.append(raw_line)
        self._texts.append(text.decode("utf-8", "surrogateescape"))
        self._reply_octets += len(raw_line)
        if len(self._lines) > self.limits.max_lines:
            raise self._fail(
                "lines-bound", f"more than {self.limits.max_lines} lines", raw_line[:80]
            )
        if self._reply_octets > self.limits.max_reply_octets:
            raise self._fail(
                "reply-bound", f"more than {self.limits.max_reply_octets} octets", raw_line[:80]
            )
        return last

    def _check_text(self, text: bytes) -> None:
        if b"\r" in text:
            self._note("bare-cr", "CR inside the line", text[:80])
        bad = text.translate(None, _TEXT_OR_CR)  # the octets outside textstring, in order
        if not bad:
            return
        if self.smtputf8 and all(b >= 0x80 for b in bad) and _is_utf8(text):
            return
        self._note("text-characters", "octets outside textstring", bad[:40])

    def _finish(self) -> Reply:
        reply = Reply(
            self._code, tuple(self._texts), b"".join(self._lines), tuple(self._violations)
        )
        self._start_reply()
        return reply

    def _start_reply(self) -> None:
        self._lines, self._texts, self._violations = [], [], []
        self._code = self._reply_octets = 0


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_replies(
    data: bytes, *, limits: Limits | None = None, smtputf8: bool = False
) -> list[Reply]:
    """All complete replies in ``data`` (a convenience for tests and tools)."""
    parser = ReplyParser(limits=limits, smtputf8=smtputf8)
    parser.feed(data)
    replies = []
    while (reply := parser.next_reply()) is not None:
        replies.append(reply)
    return replies
