"""The reply-syntax rules the parser enforces, as a catalogue, and the Violation value.

The parser reports what it finds as data (rule, level, section, offending bytes); the checks
decide what a violation means for the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from conformance.protocol.levels import Level


@dataclass(frozen=True)
class Rule:
    id: str
    level: Level
    section: str
    summary: str
    fatal: bool = False  # the stream can no longer be split into replies


_RULES = (
    # Recoverable: the reply is still delimited, so it is returned with the violation attached.
    Rule("reply-code-range", Level.MUST, "RFC 5321 §4.2",
         "reply code must be 2yz-5yz with a second digit of 0-5"),
    Rule("separator", Level.MUST, "RFC 5321 §4.2",
         "reply code must be followed by SP, '-' or CRLF"),
    Rule("multiline-code-mismatch", Level.MUST, "RFC 5321 §4.2.1",
         "every line of a multiline reply must carry the same code"),
    Rule("bare-lf", Level.MUST, "RFC 5321 §2.3.8",
         "reply lines must end in CRLF, not a bare LF"),
    Rule("bare-cr", Level.MUST, "RFC 5321 §2.3.8",
         "a CR must only appear as part of the CRLF line ending"),
    Rule("text-characters", Level.MUST, "RFC 5321 §4.2; RFC 6531 §3.7.4.2",
         "reply text must be HT, SP and printable US-ASCII (UTF-8 only under SMTPUTF8)"),
    Rule("line-too-long", Level.SHOULD, "RFC 5321 §4.5.3.1.5",
         "a reply line, code and CRLF included, must not exceed 512 octets"),
    Rule("code-without-text", Level.SHOULD, "RFC 5321 §4.2",
         "a reply code should be followed by SP (and text), not end the line"),
    # Fatal: framing is lost, so the connection can no longer be read as SMTP.
    Rule("no-reply-code", Level.MUST, "RFC 5321 §4.2",
         "every reply line must begin with a three-digit reply code", fatal=True),
    Rule("line-bound", Level.MUST, "RFC 5321 §4.5.3.1.5",
         "reply line exceeds the parser's hard bound; the rest was not read", fatal=True),
    Rule("lines-bound", Level.MUST, "RFC 5321 §4.2.1",
         "multiline reply exceeds the parser's hard bound on lines", fatal=True),
    Rule("reply-bound", Level.MUST, "RFC 5321 §4.2.1",
         "reply exceeds the parser's hard bound on octets", fatal=True),
    # Found by the client, not the parser: octets the server sent before the command they
    # would answer was sent (a 421 may come so, §3.8: it is read as the next reply).
    Rule("unsolicited-reply", Level.MUST, "RFC 5321 §4.2",
         "exactly one reply per command: nothing may come before the command is sent",
         fatal=True),
)

RULES: MappingProxyType[str, Rule] = MappingProxyType({rule.id: rule for rule in _RULES})
FATAL_RULES = frozenset(rule.id for rule in _RULES if rule.fatal)


@dataclass(frozen=True)
class Violation:
    """One broken rule in one reply: which rule, on which line, and the bytes at fault."""

    rule: str
    detail: str
    offending: bytes = b""
    line: int = 0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown reply-syntax rule {self.rule!r}")

    @property
    def level(self) -> Level:
        return RULES[self.rule].level

    @property
    def section(self) -> str:
        return RULES[self.rule].section

    def describe(self) -> str:
        where = f" (line {self.line + 1})" if self.line else ""
        shown = f": {self.offending[:80]!r}" if self.offending else ""
        return f"{self.rule}{where}: {self.detail} [{self.level} {self.section}]{shown}"
