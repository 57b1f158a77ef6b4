"""What the client sends: a ``Command`` (one line, exact bytes) or a ``Message`` (mail data).

Each knows its table group, the row of the reply-code tables its reply is judged against.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, NamedTuple

from conformance.protocol.grammar import MAX_COMMAND_LINE_OCTETS
from conformance.protocol.transcript import escape_octets
from conformance.protocol.vocabulary import END_OF_DATA, UNRECOGNISED, V
from conformance.protocol.vocabulary import VERBS as VOCABULARY

# The verbs the suite knows: the seed's and the extensions' (each has its own table row).
VERBS = frozenset(VOCABULARY)


def verb_of(line: bytes) -> str:
    """The verb as a server would read it: the first word, upper-cased (RFC 5321 §2.4)."""
    first = line.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    word = first.split(b" ", 1)[0].strip(b"\r\t")
    return word.decode("ascii", "replace").upper()


def group_of(line: bytes) -> str:
    """The table group for a command line; verbs not in the vocabulary fall in the
    'unrecognised' row."""
    verb = verb_of(line)
    return verb if verb in VERBS else UNRECOGNISED


# The kinds of unusual input (``Command.unusual_input``).
LONG_LINE_INPUT = f"a command line over {MAX_COMMAND_LINE_OCTETS} octets"
CONTROL_INPUT = "control octets in the command line"
EIGHT_BIT_INPUT = "octets outside US-ASCII in the command line"
_CONTROL_OCTET = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Command:
    """One command line, exactly as sent. ``valid``: it follows the RFC 5321 §4.1 grammar."""

    line: bytes
    valid: bool = True
    group: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", group_of(self.line))

    @classmethod
    def of(cls, text: str, *, valid: bool = True) -> Command:
        return cls(text.encode() + b"\r\n", valid)

    @property
    def verb(self) -> str:
        return verb_of(self.line)

    @property
    def verb_as_sent(self) -> str:
        return self.line.split(b" ", 1)[0].strip(b"\r\n").decode("ascii", "replace")

    @property
    def first_line(self) -> str:
        """The command line without its CRLF, and without what follows it in the same write
        (a BDAT chunk's data, lines injected after STARTTLS)."""
        return self.line.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def argument(self) -> str:
        """Everything after the verb and its space."""
        return self.first_line.partition(" ")[2]

    @property
    def parameters(self) -> dict[str, str | None]:
        """The ESMTP parameters of a MAIL or RCPT command (RFC 5321 §4.1.1.11) that follows
        the grammar, or would but for a UTF-8 mailbox (RFC 6531 §3.3): keyword (upper case)
        -> value or None."""
        verb = VOCABULARY.get(self.group)
        if verb is None:
            return {}
        argument = self.argument
        if not argument.isascii():  # a UTF-8 mailbox: the parameters follow its path
            argument = verb.argument.keyword + "<>" + argument.rpartition(">")[2]
        return verb.argument.parameters(argument)

    @property
    def utf8_mailbox(self) -> bool:
        """A MAIL or RCPT whose path is not ASCII (a UTF-8 mailbox, RFC 6531 §3.3)."""
        return self.group in (V.MAIL, V.RCPT) and not self.line.split(b">", 1)[0].isascii()

    @property
    def bare_line_break(self) -> str | None:
        """"<LF>" or "<CR>": the command line holds a bare one before its CRLF, which a server
        must not take for a line end (RFC 5321 §2.3.8); None if it holds neither."""
        first = self.line.split(b"\r\n", 1)[0]
        return "<LF>" if b"\n" in first else "<CR>" if b"\r" in first else None

    @property
    def unusual_input(self) -> str | None:
        """What in the line, beyond its verb, a server may act on whatever the verb: a line
        longer than a server must take (RFC 5321 §4.5.3.1.4), a bare line break (§2.3.8),
        control octets, or octets outside US-ASCII (§2.4); None for a plain ASCII line. A
        behaviour set off by one of these is the same whichever command carried it."""
        first = self.line.split(b"\r\n", 1)[0]
        if len(first) + 2 > MAX_COMMAND_LINE_OCTETS:
            return LONG_LINE_INPUT
        if self.bare_line_break is not None:
            return f"a bare {self.bare_line_break} in the line"
        if not first.isascii():  # first: a server that checks UTF-8 drops on these alone
            return EIGHT_BIT_INPUT
        if _CONTROL_OCTET.search(first):
            return CONTROL_INPUT
        return None

    @property
    def answers_challenge(self) -> bool:
        """A line answering the server's challenge within a command's exchange (an AUTH
        response, RFC 4954 §4): of a challenging verb's group, but not that verb."""
        verb = VOCABULARY.get(self.group)
        return verb is not None and verb.challenges and self.verb != self.group

    @property
    def last_chunk(self) -> bool:
        """``BDAT <size> LAST``: the chunk that ends the message (RFC 3030 §2)."""
        return self.group == V.BDAT and self.first_line.upper().endswith(" LAST")

    def __repr__(self) -> str:
        return f"Command({self.line!r}{'' if self.valid else ', valid=False'})"


@dataclass(frozen=True)
class Message:
    """Mail data as the client means it; ``wire`` is what goes out after the 354."""

    content: bytes

    @property
    def wire(self) -> bytes:
        """Dot-stuffed (RFC 5321 §4.5.2), CRLF-terminated, ending in <CRLF>.<CRLF>."""
        body = self.content
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"
        lines = body.split(b"\r\n")
        stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
        return stuffed + b".\r\n"

    @property
    def size(self) -> int:
        """Its size as RFC 1870 §6.1 counts it: every octet and CRLF of the content, not the
        stuffing dots or the terminating line."""
        body = self.content
        return len(body) + (2 if body and not body.endswith(b"\r\n") else 0)

    @classmethod
    def from_wire(cls, wire: bytes) -> Message:
        """A message whose ``wire`` is ``wire``: the terminator dropped, dots unstuffed."""
        lines = wire.removesuffix(b".\r\n").split(b"\r\n")
        return cls(b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines))

    def __repr__(self) -> str:
        return f"Message({self.content!r})"


# Endings a lenient server may take for the end of mail data, as a probe sends them. Only
# <CRLF>.<CRLF> ends it (RFC 5321 §4.1.1.4), and CR and LF go only together (§2.3.8); a server
# that ends the data at one of these, where the server it relays from did not, lets one
# message carry another: SMTP smuggling (CVE-2023-51764, CVE-2023-51765, CVE-2023-51766).
NON_STANDARD_ENDINGS: Mapping[str, bytes] = MappingProxyType({
    "<LF>.<LF>": b"\n.\n",
    "<LF>.<CRLF>": b"\n.\r\n",
    "<CRLF>.<LF>": b"\r\n.\n",
    "<CR>.<CR>": b"\r.\r",
    "<CR>.<LF>": b"\r.\n",
    "<CR>.<CRLF>": b"\r.\r\n",
    "<CRLF>.<CR>": b"\r\n.\r",
    "<LF>.<CR>": b"\n.\r",
    "<CRLF><NUL>.<CRLF>": b"\r\n\x00.\r\n",
    "<CRLF>.<NUL><CRLF>": b"\r\n.\x00\r\n",
})


@dataclass(frozen=True)
class DataProbe:
    """Mail data holding a non-standard end of data (``ending``, a key of
    NON_STANDARD_ENDINGS) with a command line after it (``smuggled``). A server that ends
    the data there answers before the real end, and then runs the smuggled command: it
    would let a message carry another. ``wire`` is what goes out after the 354; ``REAL_END``,
    sent after it, completes the <CRLF>.<CRLF> that ends the data for any server."""

    ending: str
    smuggled: bytes

    # No line break at its end: the ending's own line breaks are the ones the server meets.
    CONTENT: ClassVar[bytes] = (b"Subject: end-of-data probe\r\n\r\n"
                                b"Only <CRLF>.<CRLF> ends this message")
    REAL_END: ClassVar[bytes] = b".\r\n"  # after ``smuggled``, which ends in CRLF

    def __post_init__(self) -> None:
        if self.ending not in NON_STANDARD_ENDINGS:
            raise ValueError(f"unknown end-of-data variant {self.ending!r}")
        if not self.smuggled.endswith(b"\r\n") or b"\n" in self.smuggled[:-1]:
            raise ValueError(f"not one command line: {self.smuggled!r}")

    @property
    def up_to_ending(self) -> bytes:
        """The data up to and with its ending: what a client sends before it waits."""
        return self.CONTENT + NON_STANDARD_ENDINGS[self.ending]

    @property
    def ends_at_cr(self) -> bool:
        """The ending ends in a CR: a server knows it for a line end only from the octet
        after it (not an LF), so it cannot answer before more data comes."""
        return self.up_to_ending.endswith(b"\r")

    @property
    def wire(self) -> bytes:
        return self.up_to_ending + self.smuggled

    @property
    def smuggled_line(self) -> str:
        return self.smuggled.removesuffix(b"\r\n").decode("latin-1")

    @classmethod
    def from_wire(cls, wire: bytes) -> DataProbe:
        """The probe whose ``wire`` is ``wire``; ValueError if none is."""
        if wire.startswith(cls.CONTENT):
            rest = wire.removeprefix(cls.CONTENT)
            for name, ending in sorted(NON_STANDARD_ENDINGS.items(), key=lambda e: -len(e[1])):
                if rest.startswith(ending):
                    return cls(name, rest[len(ending):])
        raise ValueError(f"not an end-of-data probe: {wire[:80]!r}")

    def __repr__(self) -> str:
        return f"DataProbe({self.ending!r}, {self.smuggled!r})"


Sent = Command | Message | DataProbe


def describe(sent: Sent) -> str:
    """How reports show what was sent: a command's exact bytes, a message's size, a probe's
    ending and smuggled line."""
    if isinstance(sent, Message):
        return f"<message data, {len(sent.wire)} octets>"
    if isinstance(sent, DataProbe):
        return (f"<message data ending in {sent.ending}, then "
                f"{sent.smuggled_line!r}, {len(sent.wire)} octets>")
    return escape_octets(sent.line)


def exact_octets(sent: Sent) -> str | None:
    """What was sent, exactly, in hex: a command's line, a probe's data; None for a message
    (its size is what a report shows)."""
    if isinstance(sent, Message):
        return None
    return (sent.wire if isinstance(sent, DataProbe) else sent.line).hex()


# A domain no server under test is the destination for (RFC 2606 reserves example.net): a
# recipient there, taken without authentication, makes the server an open relay (RFC 5321
# §3.6.2, §7.1). Plainly, and behind a source route through the server itself, which a server
# SHOULD ignore and deliver to the mailbox at its end (RFC 5321 Appendix C).
RELAY_DOMAIN = "relay-check.example.net"
RELAY_PROBES = (Command.of(f"RCPT TO:<relay-check@{RELAY_DOMAIN}>"),
                Command.of(f"RCPT TO:<@[127.0.0.1]:relay-check@{RELAY_DOMAIN}>"))

# The step kind of a TLS upgrade after a 220 to STARTTLS (RFC 3207 §4): none of our bytes
# go out as SMTP, the handshake does.
TLS_UPGRADE = "tls upgrade"
# The step kind of an end-of-data probe's data (``DataProbe.wire``).
DATA_PROBE = "end-of-data probe"


class Step(NamedTuple):
    """One thing the client did in a session: sent a command or message data (its command
    group, END_OF_DATA for message data, DATA_PROBE for an end-of-data probe's; the exact
    bytes; whether the command was valid: a
    refused valid command gets a control probe, so a replay must know), or upgraded the
    connection to TLS (group TLS_UPGRADE, data: the server name asked for, or empty).

    Steps sent in one write (an RFC 2920 batch) share a ``batch`` number, counted from 1 in
    a session; 0: sent alone. A session's steps are enough to replay it."""

    group: str
    data: bytes
    valid: bool = True
    batch: int = 0

    @classmethod
    def of(cls, sent: Sent, *, batch: int = 0) -> Step:
        if isinstance(sent, Message):
            return cls(END_OF_DATA, sent.wire, batch=batch)
        if isinstance(sent, DataProbe):
            return cls(DATA_PROBE, sent.wire, batch=batch)
        return cls(sent.group, sent.line, sent.valid, batch)

    @classmethod
    def tls(cls, server_hostname: str | None = None) -> Step:
        return cls(TLS_UPGRADE, (server_hostname or "").encode())

    @property
    def is_tls(self) -> bool:
        return self.group == TLS_UPGRADE

    @property
    def answers_challenge(self) -> bool:
        """An answer to an AUTH challenge (see ``Command.answers_challenge``)."""
        return self.command().answers_challenge

    @property
    def server_hostname(self) -> str | None:
        """The server name a TLS step asked for (SNI, and verification); None: none."""
        return self.data.decode() or None

    def command(self) -> Command:
        return Command(self.data, self.valid, group=self.group)

    def to_json(self) -> dict[str, str | bool | int]:
        """As plain data, in replay files and reports alike: the group, the octets as a
        latin-1 string (so every octet survives), whether it was valid, and the batch if
        any."""
        item: dict[str, str | bool | int] = {
            "group": self.group, "data": self.data.decode("latin-1"), "valid": self.valid}
        return {**item, "batch": self.batch} if self.batch else item

    @classmethod
    def from_json(cls, item: Mapping[str, object] | Sequence[object]) -> Step:
        """The inverse of ``to_json``; also reads the list form of reports before format 4
        ([group, data, valid], and the batch if any). Without a batch: sent alone."""
        if isinstance(item, Mapping):
            group, data = item["group"], item["data"]
            valid, batch = item.get("valid", True), item.get("batch", 0)
        else:
            group, data, valid, batch = (*item, 0)[:4]
        if not isinstance(batch, int):
            raise ValueError(f"a step's batch is a number, not {batch!r}")
        return cls(str(group), str(data).encode("latin-1"), bool(valid), batch)


class Bond(enum.Enum):
    """Why a step cannot go without the step just before it."""

    BATCH = "sent in the same write (RFC 2920 §3.1)"
    UPGRADE = "the TLS handshake its STARTTLS was answered 220 for (RFC 3207 §4)"
    ANSWER = "an answer to its AUTH command's challenge (RFC 4954 §4)"
    MESSAGE = "the mail data its DATA was answered 354 for (RFC 5321 §4.1.1.4)"


def bonds(previous: Step, step: Step) -> frozenset[Bond]:
    """What holds ``step`` to the step just before it (from the vocabulary: a verb whose
    positive reply is a TLS handshake, a verb whose positive reply asks for data)."""
    verb = VOCABULARY.get(previous.group)
    held = set()
    if step.batch and step.batch == previous.batch:
        held.add(Bond.BATCH)
    if step.is_tls and verb is not None and verb.upgrades and not previous.batch:
        held.add(Bond.UPGRADE)
    if step.answers_challenge and step.group == previous.group:
        held.add(Bond.ANSWER)
    if verb is not None and verb.data_reply and step.group in (verb.data_reply, DATA_PROBE):
        held.add(Bond.MESSAGE)
    return frozenset(held)


# The client's writes, replayed as such: a batch at once, STARTTLS and then its handshake,
# an AUTH command and then each answer (each sent only after a 334).
WRITE_BONDS = frozenset({Bond.BATCH, Bond.UPGRADE, Bond.ANSWER})
# What a shorter session keeps or drops whole: a message without its DATA would be read as
# commands, a DATA without its message makes the server read the next commands as mail, a
# STARTTLS answered 220 without its handshake leaves the server waiting for one, and an
# answer without its AUTH goes out as a command, credentials and all. The commands of a
# batch can go one by one.
UNIT_BONDS = frozenset({Bond.UPGRADE, Bond.ANSWER, Bond.MESSAGE})


def grouped(steps: Sequence[Step], wanted: frozenset[Bond]) -> list[tuple[Step, ...]]:
    """``steps`` in groups: a step joins the group before it when one of the ``wanted``
    bonds holds it to that group's last step."""
    groups: list[tuple[Step, ...]] = []
    for step in steps:
        if groups and bonds(groups[-1][-1], step) & wanted:
            groups[-1] = (*groups[-1], step)
        else:
            groups.append((step,))
    return groups
