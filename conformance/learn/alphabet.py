"""The learner's inputs, from the vocabulary: each seed verb's valid command, a malformed
MAIL and RCPT, a MAIL in lower case and an unknown verb (what the strategies draw), DATA as
one input (DATA, and when delivering the whole message after a 354); with the extensions a
server advertised, their commands (STARTTLS and its handshake, AUTH PLAIN, and when
delivering a last BDAT chunk); and the outputs it is read into.

An output is the reply code as text ("250"), the codes of DATA and of the end of its data
("354 250"), ``CLOSED`` once the connection is gone, ``NO_REPLY`` for a reply that never
came, or ``NOT_SENT`` for an input the client withholds in that state. With ``classes``, a
code is read as its class ("2xx").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from conformance.protocol.commands import Command
from conformance.protocol.vocabulary import EXTENSION_VERBS, SEED_VERBS, VERBS, V
from conformance.search.plan import (
    MESSAGE,
    UNRECOGNISED_MOVE,
    VALID,
    Move,
    argument_classes,
    example,
)
from conformance.strategies.commands import malformed_command

CLOSED = "closed"
NO_REPLY = "no reply"
NOT_SENT = "not sent"  # the client does not send it there (a BDAT chunk with no CHUNKING)
MALFORMED_KIND = "no-brackets"  # a mailbox without its angle brackets (RFC 5321 §4.1.2)
CASE_VARIANT = "lower case"  # a verb is case-insensitive (RFC 5321 §2.4)
# Each extension verb's input: its argument class, and whether it completes a message (then
# it is an input only when delivering, as DATA's message is).
EXTENSION_INPUTS: Mapping[str, tuple[str, bool]] = MappingProxyType({
    V.STARTTLS: (VALID, False), V.AUTH: ("PLAIN with an initial response", False),
    V.BDAT: ("last chunk", True)})


@dataclass(frozen=True)
class Letter:
    """One input: its name (what the machine's pictures and sequences show) and its move."""

    name: str
    move: Move

    @property
    def command(self) -> Command:
        return self.move.command

    @property
    def group(self) -> str:
        return self.move.command.group


def alphabet(*, deliver: bool = False, rcpt_domain: str | None = None,
             forms: bool = True, extensions: frozenset[str] = frozenset()
             ) -> Mapping[str, Letter]:
    """The inputs by name, in the vocabulary's order. ``forms``: also the malformed MAIL and
    RCPT, the lower-case MAIL and the unknown verb. ``extensions``: the EHLO keywords whose
    commands are inputs too (a server's advertised ones)."""
    letters = []
    for verb in SEED_VERBS:
        message = MESSAGE if verb.data_reply and deliver else None
        letters.append(Letter(verb.name, Move(example(verb.name, rcpt_domain), message)))
    if forms:
        for name in (V.MAIL, V.RCPT):
            command = malformed_command(name, MALFORMED_KIND,
                                        domain=rcpt_domain or "example.test")
            letters.append(Letter(f"{name} (malformed)", Move(command)))
        recased = argument_classes(VERBS[V.MAIL])[CASE_VARIANT]
        letters.append(Letter(f"{V.MAIL} ({CASE_VARIANT})", recased))
        letters.append(Letter("unknown verb", UNRECOGNISED_MOVE))
    for verb in EXTENSION_VERBS:
        argument, delivers = EXTENSION_INPUTS[verb.name]
        if verb.extension in extensions and (deliver or not delivers):
            letters.append(Letter(verb.name, argument_classes(verb, rcpt_domain)[argument]))
    return MappingProxyType({letter.name: letter for letter in letters})


def output_of(*codes: int | None, classes: bool = False) -> str:
    """The output for the replies to one input (None: no reply)."""
    if any(code is None for code in codes):
        return NO_REPLY
    return " ".join(f"{code // 100}xx" if classes else str(code)
                    for code in codes if code is not None)


def codes_of(output: str) -> tuple[int, ...]:
    """The reply codes an output shows (none for CLOSED, NO_REPLY or a class)."""
    words = output.split()
    return tuple(int(w) for w in words) if all(w.isdigit() for w in words) else ()
